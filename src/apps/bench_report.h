// Output of `lutq bench-kernels`: the machine header, the aligned table, the T-MAC summary and
// the JSON file.
#pragma once

#include <string>
#include <vector>

#include "apps/bandwidth_probe.h"
#include "apps/bench_kernels.h"
#include "core/status.h"

namespace lutq::apps {

struct MachineInfo {
  std::string cpu;  // brand string
  std::string features;  // CpuFeatures::summary()
  std::string isas;  // LUT backends this CPU runs, best first, e.g. "avx2 scalar ref"
  int hardware_threads = 0;
  std::vector<BandwidthResult> bandwidth;  // one per probed thread count
  int64_t probe_bytes = 0;
  std::string date;  // ISO 8601, UTC
};

// "2026-11-24T10:00:00Z"
std::string utc_now_iso8601();

void print_machine_header(const MachineInfo& machine, const BenchOptions& options);
void print_table_header();
void print_row(const BenchRow& row);
void print_note(const std::string& note);
// The 4096x4096, m = 1, 1-thread rows beside T-MAC's published figures (when the run has them).
void print_summary(const std::vector<BenchRow>& rows);

Status write_json(const std::string& path, const MachineInfo& machine, const BenchOptions& options,
                  const std::vector<BenchRow>& rows, const std::vector<std::string>& notes);

}  // namespace lutq::apps
