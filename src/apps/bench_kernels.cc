// The benchmark grid of `lutq bench-kernels` (options and their meaning: bench_kernels.h and
// bench_kernels_cmd.cc). For each shape: the dense fp32 baselines (our AVX2 kernel, then
// OpenBLAS), then every (kind, q, g, isa, precision) built once as DRAM copies and timed over
// (m, threads, regime).
#include "apps/bench_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "apps/bandwidth_probe.h"
#include "apps/bench_report.h"
#include "apps/bench_weights.h"
#include "core/aligned_buffer.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "format/scale_codes.h"
#include "kernels/dense/dense_gemm.h"
#include "kernels/linear.h"

namespace lutq::apps {
namespace {

using Clock = std::chrono::steady_clock;
using kernels::BcqLinear;
using kernels::Isa;
using kernels::Precision;

constexpr int kMaxReps = 1'000'000;
constexpr int kHotProbePasses = 31;  // a warm pass over a hot row's weights takes ~0.01-2 ms

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
  double max_ms = 0.0;
  int reps = 0;
};

// Times call(i) for i = 0, 1, 2, ... (the caller maps i to a weight copy): 3 warm-up calls (the
// fastest of the last two estimates the call time; a hot row warms on for 5% of its budget), then
// the timed calls, each timed on its own.
Timing time_calls(FunctionRef<void(int64_t)> call, const BenchOptions& opt, bool hot) {
  int64_t i = 0;
  double estimate = std::numeric_limits<double>::infinity();
  double warm = 0.0;
  for (int w = 0; w < 3 || (hot && warm < 0.05 * opt.target_seconds && w < 1000); ++w) {
    const auto t0 = Clock::now();
    call(i++);
    const double dt = seconds_since(t0);
    if (w > 0) estimate = std::min(estimate, dt);
    warm += dt;
  }
  int reps = opt.reps;
  if (reps <= 0) {
    const double want = std::ceil(opt.target_seconds / std::max(estimate, 1e-9));
    reps = static_cast<int>(std::clamp(want, static_cast<double>(opt.min_reps), static_cast<double>(kMaxReps)));
  }
  std::vector<double> t(static_cast<size_t>(reps));
  for (double& ti : t) {
    const auto t0 = Clock::now();
    call(i++);
    ti = seconds_since(t0);
  }
  std::sort(t.begin(), t.end());
  const size_t h = t.size() / 2;
  const double median = t.size() % 2 ? t[h] : 0.5 * (t[h - 1] + t[h]);
  return {median * 1e3, t.front() * 1e3, t.back() * 1e3, reps};
}

// Progress on stderr: one rewritten line on a terminal, one line per step otherwise.
class Progress {
 public:
  explicit Progress(int total) : total_(total), tty_(isatty(fileno(stderr)) != 0) {}
  void step(const std::string& what) {
    ++done_;
    std::fprintf(stderr, tty_ ? "\r\033[K[%d/%d] %s" : "[%d/%d] %s\n", done_, total_, what.c_str());
    std::fflush(stderr);
  }
  void skip(int steps) { done_ += steps; }
  void show(const std::string& line) const {
    std::fprintf(stderr, tty_ ? "\r\033[K%s" : "%s\n", line.c_str());
    std::fflush(stderr);
  }
  void clear() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  int total_;
  int done_ = 0;
  bool tty_;
};

int64_t default_group(int64_t k) {
  for (int64_t g : {128, 64, 32}) {
    if (k % g == 0) return g;
  }
  return k;
}

class Bench {
 public:
  explicit Bench(const BenchOptions& opt) : opt_(opt), cpu_(detect_cpu()), progress_(count_rows()) {}

  Status run() {
    const auto t_start = Clock::now();
    probe();
    print_machine_header(machine_, opt_);
    if (opt_.isas.empty()) note("no SIMD LUT backend is available on this CPU; pass --isa scalar for the scalar reference");
    print_table_header();
    for (const Shape& s : opt_.shapes) {
      prepare_activations(s);
      if (opt_.baseline) run_baselines(s);
      for (int64_t g : groups_for(s)) {
        for (WeightKind kind : opt_.kinds) {
          for (int q : opt_.bits) {
            for (Isa isa : opt_.isas) {
              for (Precision p : precisions_for(isa)) {
                for (const auto& path : opt_.paths) run_config(s, kind, q, g, isa, p, path);
              }
            }
          }
        }
      }
    }
    progress_.clear();
    print_summary(rows_);
    std::printf("\ntotal %.1f s, %zu rows\n", seconds_since(t_start), rows_.size());
    if (!opt_.json_path.empty()) {
      if (Status st = write_json(opt_.json_path, machine_, opt_, rows_, notes_); !st) return st;
      std::printf("wrote %s\n", opt_.json_path.c_str());
    }
    return Status::ok();
  }

 private:
  std::vector<int64_t> groups_for(const Shape& s) const {
    if (!opt_.groups.empty()) return opt_.groups;
    return {default_group(s.k)};
  }
  std::vector<Precision> precisions_for(Isa isa) const {
    if (isa == Isa::kRef) return {opt_.precisions.front()};  // ref ignores the table precision
    return opt_.precisions;
  }
  int rows_per_config() const {
    return static_cast<int>(opt_.ms.size() * opt_.threads.size() * opt_.regimes.size());
  }
  int count_rows() const {
    int total = 0;
    for (const Shape& s : opt_.shapes) {
      if (opt_.baseline) total += static_cast<int>(2 * opt_.ms.size() * opt_.threads.size());
      for (Isa isa : opt_.isas) {
        total += static_cast<int>(groups_for(s).size() * opt_.kinds.size() * opt_.bits.size() *
                                  precisions_for(isa).size() * opt_.paths.size()) * rows_per_config();
      }
    }
    return total;
  }

  ThreadPool& pool(int threads) {
    auto& p = pools_[threads];
    if (!p) p = std::make_unique<ThreadPool>(threads);
    return *p;
  }

  void note(const std::string& text) {
    progress_.clear();
    print_note(text);
    notes_.push_back(text);
  }

  void probe() {
    std::vector<int> counts = {1, 2};
    counts.insert(counts.end(), opt_.threads.begin(), opt_.threads.end());
    std::sort(counts.begin(), counts.end());
    counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
    machine_.cpu = cpu_.brand;
    machine_.features = cpu_.summary();
    for (Isa isa : kernels::available_isas(cpu_)) {
      if (!machine_.isas.empty()) machine_.isas += ' ';
      machine_.isas += kernels::isa_name(isa);
    }
    machine_.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
    machine_.probe_bytes = opt_.probe_bytes;
    machine_.date = utc_now_iso8601();
    progress_.show("probing read bandwidth");
    BandwidthProbe probe(static_cast<size_t>(opt_.probe_bytes), cpu_.avx2);
    for (int t : counts) {
      progress_.show("probing read bandwidth, " + std::to_string(t) + " thread(s)");
      const BandwidthResult b = probe.measure(pool(t), opt_.probe_passes);
      machine_.bandwidth.push_back(b);
      bandwidth_[t] = b.median_gbps;
    }
    progress_.clear();
  }

  // The read bandwidth a row's floor% compares with. A hot row's weights sit in cache, so its
  // floor is a warm read of an array of the same size on the same threads (probed once per size
  // and thread count, many short passes); DRAM rows compare with the DRAM probe.
  double floor_bandwidth(const BenchRow& row) {
    if (row.regime != "hot") return bandwidth_.count(row.threads) ? bandwidth_.at(row.threads) : 0.0;
    const auto key = std::make_pair(row.threads, row.weight_bytes);
    if (auto it = hot_bandwidth_.find(key); it != hot_bandwidth_.end()) return it->second;
    BandwidthProbe probe(static_cast<size_t>(std::max<int64_t>(row.weight_bytes, 4096)), cpu_.avx2);
    const double gbps = probe.measure(pool(row.threads), kHotProbePasses).median_gbps;
    hot_bandwidth_[key] = gbps;
    return gbps;
  }

  void prepare_activations(const Shape& s) {
    const int64_t max_m = *std::max_element(opt_.ms.begin(), opt_.ms.end());
    x_ = AlignedBuffer(static_cast<size_t>(max_m * s.k) * sizeof(float));
    y_ = AlignedBuffer(static_cast<size_t>(max_m * s.n) * sizeof(float));
    fill_random(x_.as<float>(), static_cast<size_t>(max_m * s.k), 0x5eed + static_cast<uint64_t>(s.k));
  }

  int64_t dram_copies(int64_t bytes) const {
    const bool dram = std::find(opt_.regimes.begin(), opt_.regimes.end(), Regime::kDram) != opt_.regimes.end();
    if (!dram) return 1;
    return std::max<int64_t>(2, opt_.dram_bytes / std::max<int64_t>(bytes, 1) + 1);
  }

  // Fills the derived columns and keeps the row; prints it unless `defer` (baselines print once
  // both are timed, so each shows its speedup over the other).
  void finish_row(BenchRow row, const Timing& t, bool defer = false) {
    row.reps = t.reps;
    row.median_ms = t.median_ms;
    row.min_ms = t.min_ms;
    row.max_ms = t.max_ms;
    const double seconds = t.median_ms * 1e-3;
    row.gbps = static_cast<double>(row.weight_bytes) / seconds / 1e9;
    const double bw = floor_bandwidth(row);
    row.floor_gbps = bw;
    row.floor_fraction = bw > 0.0 ? static_cast<double>(row.weight_bytes) / (bw * 1e9) / seconds : 0.0;
    const auto key = std::make_pair(row.m, row.threads);
    if (auto it = dense_ms_.find(key); it != dense_ms_.end()) row.speedup_dense = it->second / t.median_ms;
    if (auto it = blas_ms_.find(key); it != blas_ms_.end()) row.speedup_blas = it->second / t.median_ms;
    if (!defer) {
      progress_.clear();
      print_row(row);
    }
    rows_.push_back(std::move(row));
  }

  BenchRow base_row(const Shape& s, int64_t m, int threads) const {
    BenchRow r;
    r.shape = s;
    r.m = m;
    r.threads = threads;
    return r;
  }

  void run_baselines(const Shape& s) {
    dense_ms_.clear();
    blas_ms_.clear();
    const int64_t bytes = s.n * s.k * static_cast<int64_t>(sizeof(float));
    const int64_t copies = std::max<int64_t>(2, opt_.dram_bytes / bytes + 1);
    progress_.show("filling " + std::to_string(copies) + " dense fp32 copies of " + s.text());
    std::vector<AlignedBuffer> w;
    w.reserve(static_cast<size_t>(copies));
    for (int64_t c = 0; c < copies; ++c) {  // distinct contents, so no page can be shared
      w.emplace_back(static_cast<size_t>(bytes));
      fill_random(w.back().as<float>(), static_cast<size_t>(s.n * s.k), 1000 + static_cast<uint64_t>(c));
    }
    const size_t first_row = rows_.size();
    const float* x = x_.as<float>();
    float* y = y_.as<float>();
    const std::string dense_name = cpu_.avx2 ? "dense-avx2" : "dense-scalar";
    auto row_of = [&](int64_t m, int t, const std::string& backend) {
      BenchRow r = base_row(s, m, t);
      r.kind = "fp32";
      r.backend = backend;
      r.precision = "-";
      r.regime = "dram";
      r.copies = copies;
      r.weight_bytes = bytes;
      return r;
    };
    for (int64_t m : opt_.ms) {
      for (int t : opt_.threads) {
        progress_.step(s.text() + " fp32 m=" + std::to_string(m) + " t=" + std::to_string(t) + " " + dense_name);
        ThreadPool& tp = pool(t);
        auto call = [&](int64_t i) {
          const kernels::DenseWeights dw{w[static_cast<size_t>(i % copies)].as<float>(), s.n, s.k};
          kernels::dense_gemm(dw, x, m, y, tp, cpu_.avx2);
        };
        const Timing tm = time_calls(call, opt_, false);
        dense_ms_[{m, t}] = tm.median_ms;
        finish_row(row_of(m, t, dense_name), tm, /*defer=*/true);
      }
    }
    // OpenBLAS last, thread counts ascending: its workers spin for a while after a call and
    // would steal a core from our pools.
    std::vector<int> threads = opt_.threads;
    std::sort(threads.begin(), threads.end());
    for (int t : threads) {
      openblas_set_num_threads(t);
      for (int64_t m : opt_.ms) {
        progress_.step(s.text() + " fp32 m=" + std::to_string(m) + " t=" + std::to_string(t) + " openblas");
        auto call = [&](int64_t i) {
          const float* wi = w[static_cast<size_t>(i % copies)].as<float>();
          const auto n = static_cast<int>(s.n), k = static_cast<int>(s.k), mi = static_cast<int>(m);
          if (m == 1) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, wi, k, x, 1, 0.0f, y, 1);
          } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, n, k, 1.0f, x, k, wi, k, 0.0f, y, n);
          }
        };
        const Timing tm = time_calls(call, opt_, false);
        blas_ms_[{m, t}] = tm.median_ms;
        finish_row(row_of(m, t, "openblas"), tm, /*defer=*/true);
      }
    }
    openblas_set_num_threads(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let OpenBLAS's workers sleep
    progress_.clear();
    for (size_t i = first_row; i < rows_.size(); ++i) {
      BenchRow& r = rows_[i];
      if (auto it = dense_ms_.find({r.m, r.threads}); it != dense_ms_.end()) r.speedup_dense = it->second / r.median_ms;
      if (auto it = blas_ms_.find({r.m, r.threads}); it != blas_ms_.end()) r.speedup_blas = it->second / r.median_ms;
      print_row(r);
    }
  }

  void run_config(const Shape& s, WeightKind kind, int q, int64_t g, Isa isa, Precision p,
                  kernels::GemmPath path) {
    const std::string backend_name = std::string(kernels::isa_name(isa)) +
                                     (path == kernels::GemmPath::kAuto ? "" : std::string("+") + kernels::gemm_path_name(path));
    format::BcqConfig cfg;
    cfg.q = q;
    cfg.g = g;
    cfg.has_offset = kind == WeightKind::kUniform;
    const std::string label = s.text() + " " + kind_name(kind) + " q=" + std::to_string(q) + " g=" + std::to_string(g) +
                              " " + backend_name + "/" + kernels::precision_name(p);
    uint64_t seed = (static_cast<uint64_t>(s.n) << 32) ^ static_cast<uint64_t>(s.k * 131 + q * 7 + g);
    // bcq-s8: the same weights with 8-bit compressed scales (per-OC layouts keep the codes).
    auto make = [&](uint64_t sd) -> Result<format::BcqMatrix> {
      Result<format::BcqMatrix> r = random_bcq(s.n, s.k, cfg, sd);
      if (!r || kind != WeightKind::kBcqCoded) return r;
      return format::encode_scales(*r, 8);
    };
    Result<format::BcqMatrix> w = make(seed);
    if (!w) {
      note("skipped " + label + ": " + w.status().message());
      progress_.skip(rows_per_config());
      return;
    }
    Result<BcqLinear> first = BcqLinear::create(*w, isa, p, path);
    if (!first) {
      note("skipped " + label + ": " + first.status().message());
      progress_.skip(rows_per_config());
      return;
    }
    const int64_t bytes = first->weight_bytes();
    const int64_t copies = dram_copies(bytes);
    std::vector<BcqLinear> lin;
    lin.reserve(static_cast<size_t>(copies));
    lin.push_back(std::move(first).value());
    progress_.show("building " + std::to_string(copies) + (copies == 1 ? " copy of " : " copies of ") + label);
    for (int64_t c = 1; c < copies; ++c) {  // distinct random contents per copy
      Result<format::BcqMatrix> wc = make(seed + static_cast<uint64_t>(c) * 0x9e3779b97f4a7c15ull);
      Result<BcqLinear> l = wc ? BcqLinear::create(*wc, isa, p, path) : Result<BcqLinear>(wc.status());
      if (!l) {
        note("skipped " + label + ": " + l.status().message());
        progress_.skip(rows_per_config());
        return;
      }
      lin.push_back(std::move(l).value());
    }
    *w = format::BcqMatrix{};  // free the canonical matrix before timing
    const float* x = x_.as<float>();
    float* y = y_.as<float>();
    for (int64_t m : opt_.ms) {
      for (int t : opt_.threads) {
        ThreadPool& tp = pool(t);
        if (Status st = lin[0].forward(x, m, y, tp); !st) {
          note("skipped " + label + " m=" + std::to_string(m) + ": " + st.message());
          progress_.skip(static_cast<int>(opt_.regimes.size()));
          continue;
        }
        for (Regime regime : opt_.regimes) {
          progress_.step(label + " m=" + std::to_string(m) + " t=" + std::to_string(t) + " " + regime_name(regime));
          const bool hot = regime == Regime::kHot;
          auto call = [&](int64_t i) {
            const BcqLinear& l = lin[hot ? 0 : static_cast<size_t>(i % copies)];
            (void)l.forward(x, m, y, tp);
          };
          const Timing tm = time_calls(call, opt_, hot);
          BenchRow r = base_row(s, m, t);
          r.kind = kind_name(kind);
          r.q = q;
          r.g = g;
          r.backend = backend_name;
          r.precision = isa == Isa::kRef ? "-" : kernels::precision_name(p);
          r.regime = regime_name(regime);
          r.copies = hot ? 1 : copies;
          r.weight_bytes = bytes;
          finish_row(std::move(r), tm);
        }
      }
    }
  }

  const BenchOptions& opt_;
  CpuFeatures cpu_;
  Progress progress_;
  MachineInfo machine_;
  std::map<int, std::unique_ptr<ThreadPool>> pools_;
  std::map<int, double> bandwidth_;  // threads -> probed GB/s
  std::map<std::pair<int, int64_t>, double> hot_bandwidth_;  // (threads, bytes) -> warm read GB/s
  std::map<std::pair<int64_t, int>, double> dense_ms_;  // (m, threads) -> median, current shape
  std::map<std::pair<int64_t, int>, double> blas_ms_;
  AlignedBuffer x_;
  AlignedBuffer y_;
  std::vector<BenchRow> rows_;
  std::vector<std::string> notes_;
};

}  // namespace

Status run_bench_kernels(const BenchOptions& options) {
  for (const Shape& s : options.shapes) {
    if (options.groups.empty() && default_group(s.k) != 128) {
      std::fprintf(stderr, "note: g=128 does not divide k=%lld; %s uses g=%lld (choose with --group)\n",
                   static_cast<long long>(s.k), s.text().c_str(), static_cast<long long>(default_group(s.k)));
    }
  }
  Bench bench(options);
  return bench.run();
}

}  // namespace lutq::apps
