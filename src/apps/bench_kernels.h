// `lutq bench-kernels`: times the LUT GEMM backends on random BCQ weights against dense fp32
// baselines (our AVX2 kernel and OpenBLAS) and the machine's probed read bandwidth. Speed is
// measured and reported here, never asserted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/kernel.h"
#include "kernels/linear.h"

namespace lutq::apps {

struct Shape {
  int64_t n = 0;  // output features
  int64_t k = 0;  // input features
  std::string text() const { return std::to_string(n) + "x" + std::to_string(k); }
  bool operator==(const Shape&) const = default;
};

// bcq: Σ α_i·B_i without offset; uniform: with a per-group offset (uniform quantization
// written as BCQ-with-offset); bcq-s8 (kBcqCoded): bcq with 8-bit compressed scales.
enum class WeightKind : uint8_t { kBcq, kUniform, kBcqCoded };
// dram: rotate over enough weight copies (> max(512 MiB, 4x the L3)) that every call streams from memory;
// hot: one warmed-up copy.
enum class Regime : uint8_t { kDram, kHot };

const char* kind_name(WeightKind kind);
const char* regime_name(Regime regime);

struct BenchOptions {
  std::vector<Shape> shapes;
  std::vector<int> bits;
  std::vector<int64_t> groups;  // empty: per shape, 128 where it divides k, else 64, 32, k
  std::vector<int64_t> ms;
  std::vector<int> threads;
  std::vector<kernels::Isa> isas;
  std::vector<kernels::Precision> precisions;
  // GEMM paths (BcqLinear::create's `path`): kAuto is the policy; the backend column reads
  // "avx512+lut" / "avx512+int8" for forced paths.
  std::vector<kernels::GemmPath> paths = {kernels::GemmPath::kAuto};
  std::vector<WeightKind> kinds;
  std::vector<Regime> regimes;
  int reps = 0;  // timed calls per row; 0: adaptive (target_seconds, at least min_reps)
  double target_seconds = 0.2;
  int min_reps = 10;
  bool baseline = true;
  int64_t dram_bytes = int64_t{512} << 20;  // the DRAM regime rotates over more than this
  int64_t llc_bytes = 0;  // last-level cache size read from the OS (0: unknown); dram_bytes >= 4x it
  int64_t probe_bytes = int64_t{1} << 30;
  int probe_passes = 7;
  std::string json_path;  // empty: no JSON
};

// One printed / JSON row: a LUT backend or a baseline on one configuration.
struct BenchRow {
  Shape shape;
  std::string kind;  // "bcq", "uniform" or "fp32" (baselines)
  int q = 0;  // bit-planes; 0 for fp32
  int64_t g = 0;  // group size; 0 for fp32
  int64_t m = 0;
  int threads = 0;
  std::string backend;  // "avx2", "scalar", ..., "dense-avx2", "openblas"
  std::string precision;  // "fast", "exact", "-" for baselines
  std::string regime;
  int reps = 0;
  int64_t copies = 0;  // weight copies rotated over
  double median_ms = 0.0;
  double min_ms = 0.0;
  double max_ms = 0.0;
  int64_t weight_bytes = 0;
  double gbps = 0.0;  // weight bytes / median time
  double floor_fraction = 0.0;  // (weight bytes / floor_gbps) / median time
  // The read bandwidth the row is compared with: the DRAM probe at its thread count (dram rows,
  // baselines) or a warm read of an array as large as its weights (hot rows).
  double floor_gbps = 0.0;
  std::optional<double> speedup_dense;  // dense fp32 (ours) median / this median
  std::optional<double> speedup_blas;  // OpenBLAS median / this median
};

// Runs the grid, printing the machine header and one row per configuration to stdout (progress
// to stderr) and writing JSON when asked. A configuration a backend rejects is skipped with a note.
Status run_bench_kernels(const BenchOptions& options);

}  // namespace lutq::apps
