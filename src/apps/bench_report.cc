#include "apps/bench_report.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>

#include "apps/commands.h"

namespace lutq::apps {
namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Milliseconds with about four significant digits.
std::string fmt_ms(double ms) {
  if (ms < 0.1) return fmt("%.4f", ms);
  if (ms < 100.0) return fmt("%.3f", ms);
  return fmt("%.1f", ms);
}

std::string fmt_speedup(const std::optional<double>& s) { return s ? fmt("%.2fx", *s) : std::string("-"); }

constexpr const char* kRowFormat = "%-11s %-7s %2s %4s %3s %3s %-10s %-5s %-6s %9s %19s %9s %7s %6s %8s %8s\n";

}  // namespace

std::string utc_now_iso8601() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void print_machine_header(const MachineInfo& machine, const BenchOptions& options) {
  std::printf("lutq %s bench-kernels, %s\n", kVersion, machine.date.c_str());
  std::printf("cpu: %s | features: %s | backends: %s | hardware threads: %d\n", machine.cpu.c_str(),
              machine.features.c_str(), machine.isas.c_str(), machine.hardware_threads);
  std::printf("read bandwidth (%.0f MiB array, 4 streams per thread, median of %d passes):",
              static_cast<double>(machine.probe_bytes) / (1 << 20), options.probe_passes);
  for (const BandwidthResult& b : machine.bandwidth) {
    std::printf("  %dT %.1f GB/s (%.1f-%.1f)", b.threads, b.median_gbps, b.min_gbps, b.max_gbps);
  }
  std::printf("\n");
  std::printf("dram: rotate > %lld MiB of weight copies (L3 per sysfs: %lld MiB); hot: one warm copy; times are medians of the timed calls\n",
              static_cast<long long>(options.dram_bytes >> 20), static_cast<long long>(options.llc_bytes >> 20));
  std::printf("floor%% = (weight bytes / probed GB/s at that thread count) / median: dram rows against the probe above, "
              "hot rows against a warm read of an array as large as their weights (JSON floor_gbps); x dense / x blas = "
              "speedup over dense fp32 (ours, AVX2) / OpenBLAS, same shape, m, threads, dram\n\n");
  std::fflush(stdout);
}

void print_table_header() {
  std::printf(kRowFormat, "shape", "kind", "q", "g", "m", "thr", "backend", "prec", "regime", "median ms",
              "min-max ms", "weight MB", "GB/s", "floor%", "x dense", "x blas");
  std::fflush(stdout);
}

void print_row(const BenchRow& r) {
  const std::string q = r.q > 0 ? std::to_string(r.q) : "-";
  const std::string g = r.g > 0 ? std::to_string(r.g) : "-";
  const std::string range = fmt_ms(r.min_ms) + "-" + fmt_ms(r.max_ms);
  std::printf(kRowFormat, r.shape.text().c_str(), r.kind.c_str(), q.c_str(), g.c_str(), std::to_string(r.m).c_str(),
              std::to_string(r.threads).c_str(), r.backend.c_str(), r.precision.c_str(), r.regime.c_str(),
              fmt_ms(r.median_ms).c_str(), range.c_str(), fmt("%.3f", static_cast<double>(r.weight_bytes) / 1e6).c_str(),
              fmt("%.1f", r.gbps).c_str(), fmt("%.0f%%", 100.0 * r.floor_fraction).c_str(),
              fmt_speedup(r.speedup_dense).c_str(), fmt_speedup(r.speedup_blas).c_str());
  std::fflush(stdout);
}

void print_note(const std::string& note) {
  std::printf("# %s\n", note.c_str());
  std::fflush(stdout);
}

void print_summary(const std::vector<BenchRow>& rows) {
  bool any = false;
  for (const BenchRow& r : rows) {
    if (r.shape.n != 4096 || r.shape.k != 4096 || r.m != 1 || r.threads != 1 || r.q == 0) continue;
    if (!any) {
      std::printf("\n4096x4096 GEMV, 1 thread (T-MAC, one Ice Lake core: 0.68 / 0.43 / 0.22 ms at 4 / 3 / 2 bits):\n");
      any = true;
    }
    std::printf("  %-7s q=%d g=%-4lld %-6s %-5s %-5s %s ms (%s)\n", r.kind.c_str(), r.q, static_cast<long long>(r.g),
                r.backend.c_str(), r.precision.c_str(), r.regime.c_str(), fmt_ms(r.median_ms).c_str(),
                (fmt_ms(r.min_ms) + "-" + fmt_ms(r.max_ms)).c_str());
  }
  std::fflush(stdout);
}

Status write_json(const std::string& path, const MachineInfo& machine, const BenchOptions& options,
                  const std::vector<BenchRow>& rows, const std::vector<std::string>& notes) {
  nlohmann::json j;
  j["tool"] = "lutq bench-kernels";
  j["version"] = kVersion;
  j["date"] = machine.date;
  nlohmann::json bw = nlohmann::json::array();
  for (const BandwidthResult& b : machine.bandwidth) {
    bw.push_back({{"threads", b.threads}, {"median_gbps", b.median_gbps}, {"min_gbps", b.min_gbps}, {"max_gbps", b.max_gbps}});
  }
  j["machine"] = {{"cpu", machine.cpu},
                  {"features", machine.features},
                  {"isas", machine.isas},
                  {"hardware_threads", machine.hardware_threads},
                  {"probe_bytes", machine.probe_bytes},
                  {"probe_passes", options.probe_passes},
                  {"read_bandwidth", bw}};
  j["settings"] = {{"dram_bytes", options.dram_bytes},
                   {"llc_bytes", options.llc_bytes},
                   {"reps", options.reps},
                   {"target_seconds", options.target_seconds},
                   {"min_reps", options.min_reps}};
  nlohmann::json out_rows = nlohmann::json::array();
  for (const BenchRow& r : rows) {
    nlohmann::json o = {{"shape", r.shape.text()},
                        {"n", r.shape.n},
                        {"k", r.shape.k},
                        {"kind", r.kind},
                        {"q", r.q},
                        {"g", r.g},
                        {"m", r.m},
                        {"threads", r.threads},
                        {"backend", r.backend},
                        {"precision", r.precision},
                        {"regime", r.regime},
                        {"reps", r.reps},
                        {"copies", r.copies},
                        {"median_ms", r.median_ms},
                        {"min_ms", r.min_ms},
                        {"max_ms", r.max_ms},
                        {"weight_bytes", r.weight_bytes},
                        {"gbps", r.gbps},
                        {"floor_fraction", r.floor_fraction},
                        {"floor_gbps", r.floor_gbps}};
    o["speedup_dense"] = r.speedup_dense ? nlohmann::json(*r.speedup_dense) : nlohmann::json(nullptr);
    o["speedup_blas"] = r.speedup_blas ? nlohmann::json(*r.speedup_blas) : nlohmann::json(nullptr);
    out_rows.push_back(std::move(o));
  }
  j["rows"] = std::move(out_rows);
  j["notes"] = notes;
  std::ofstream f(path);
  if (!f) return Status(StatusCode::kIoError, "cannot open '" + path + "' for writing");
  f << j.dump(2) << '\n';
  f.close();
  if (!f) return Status(StatusCode::kIoError, "failed writing '" + path + "'");
  return Status::ok();
}

}  // namespace lutq::apps
