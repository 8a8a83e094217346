// `lutq bench MODEL`: prefill (ppN: N prompt tokens in one batched pass) and decode (tgN: N
// tokens one at a time) throughput at each thread count, with the weight bytes streamed per
// decoded token and the share of the memory-bandwidth floor, the bandwidth probed in the same run.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "apps/bandwidth_probe.h"
#include "apps/bench_report.h"
#include "apps/commands.h"
#include "apps/model_options.h"
#include "core/cpu.h"

namespace lutq::apps {
namespace {

struct BenchArgs {
  ModelArgs model;
  std::vector<int64_t> pp = {128, 512};
  std::vector<int64_t> tg = {128};
  std::vector<int> threads = {1, 2};
  int reps = 3;
  int64_t probe_mib = 512;
  std::string json_path;
  int64_t depth = 0;  // positions already in the cache before each timed test (decode at context)
};

struct Sample {
  std::string test;  // "pp512", "tg128"
  int threads = 0;
  double median_tps = 0.0;
  double stddev_tps = 0.0;
  double floor_fraction = 0.0;  // tg only: (bytes per token / bandwidth) / measured time per token
  double round_trips = 0.0;     // thread-pool round trips per token (tg) or per pass (pp), median run
};

// One timed run: its speed and the pool round trips it took per token (tg) or pass (pp).
struct Timed {
  double tps = 0.0;
  double round_trips = 0.0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Deterministic token ids spread over the vocabulary (content does not change the work).
std::vector<int32_t> bench_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

// Tokens per second of one run: a prefill of n tokens in one pass, or n single-token decode steps
// after a one-token prompt.
// With depth > 0 the cache first holds `depth` positions (prefilled untimed), so tgN measures
// decode at context depth..depth+N (the attention memory's cost grows with it).
Result<Timed> run_once(const model::Model& m, const model::MemorySpec& kv, int64_t depth, bool prefill, int64_t n,
                       ThreadPool& pool) {
  const std::vector<int32_t> toks = bench_tokens(depth + n + 1, m.config().n_vocab);
  Result<std::unique_ptr<model::Memory>> memory = m.make_memory(depth + n + 1, 1, kv.kind, kv.options);
  if (!memory) return memory.status();
  model::Memory& cache = **memory;
  std::vector<float> logits(static_cast<size_t>(m.config().n_vocab));
  for (int64_t at = 0; at < depth; at += 512) {
    const auto part = std::span<const int32_t>(toks.data() + at, static_cast<size_t>(std::min<int64_t>(512, depth - at)));
    if (Status s = m.forward(part, at, cache, logits.data(), pool); !s) return s;
  }
  if (prefill) {
    const uint64_t trips0 = pool.round_trips();
    const auto t0 = std::chrono::steady_clock::now();
    if (Status s = m.forward(std::span<const int32_t>(toks.data() + depth, static_cast<size_t>(n)), depth, cache,
                             logits.data(), pool);
        !s) {
      return s;
    }
    return Timed{static_cast<double>(n) / seconds_since(t0), static_cast<double>(pool.round_trips() - trips0)};
  }
  if (Status s = m.forward(std::span<const int32_t>(toks.data() + depth, 1), depth, cache, logits.data(), pool); !s) {
    return s;
  }
  const uint64_t trips0 = pool.round_trips();
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();
  for (int64_t i = depth + 1; i <= depth + n; ++i) {
    if (Status s = m.forward(std::span<const int32_t>(toks.data() + i, 1), i, cache, logits.data(), pool); !s) return s;
  }
  // On a shared machine the wall clock measures the neighbours too; the process CPU time per
  // token (all threads) measures the work.
  std::fprintf(stderr, "lutq: tg%lld at depth %lld: %.3f s wall, %.3f s CPU, %.1f ms CPU per token\n",
               static_cast<long long>(n), static_cast<long long>(depth), seconds_since(t0),
               static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC,
               1e3 * static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC / static_cast<double>(n));
  return Timed{static_cast<double>(n) / seconds_since(t0),
               static_cast<double>(pool.round_trips() - trips0) / static_cast<double>(n)};
}

// Tensor parallelism: what the all-reduces of one test cost, per token and per call.
void print_comm_line(const CommStats& before, const CommStats& after, double tokens, double wall_s) {
  const double calls = static_cast<double>(after.all_reduce_calls - before.all_reduce_calls);
  const double bytes = static_cast<double>(after.all_reduce_bytes - before.all_reduce_bytes);
  const double secs = after.all_reduce_seconds - before.all_reduce_seconds;
  const double gathered = static_cast<double>(after.all_gather_bytes - before.all_gather_bytes);
  const double gather_s = after.all_gather_seconds - before.all_gather_seconds;
  if (calls <= 0.0) return;
  std::printf("         comm: %.0f all-reduces, %.1f KiB/token, %.1f us each; logits all-gather %.1f KiB/token, "
              "%.1f us/token; %.1f%% of the time in both (rank 0, waits for slower ranks included)\n",
              calls, bytes / tokens / 1024.0, 1e6 * secs / calls, gathered / tokens / 1024.0, 1e6 * gather_s / tokens,
              100.0 * (secs + gather_s) / wall_s);
}

// The results as JSON at a.json_path (the machine, the model, every sample).
Status write_json(const BenchArgs& a, const model::Model& m, const model::MemorySpec& kv, const MachineInfo& machine,
                  const std::vector<Sample>& samples) {
  const int64_t bytes_per_token = m.weight_bytes();
  nlohmann::json j;
  j["date"] = utc_now_iso8601();
  j["model"] = a.model.path;
  j["cpu"] = machine.cpu;
  j["weight_bytes_per_token"] = bytes_per_token;
  j["kv_cache"] = model::memory_spec_name(kv);
  j["depth"] = a.depth;
  j["bandwidth_gbps"] = nlohmann::json::array();
  for (const BandwidthResult& b : machine.bandwidth) j["bandwidth_gbps"].push_back({{"threads", b.threads}, {"median", b.median_gbps}});
  j["results"] = nlohmann::json::array();
  for (const Sample& s : samples) {
    j["results"].push_back({{"test", s.test}, {"threads", s.threads}, {"tokens_per_s", s.median_tps},
                            {"stddev", s.stddev_tps}, {"floor_fraction", s.floor_fraction},
                            {"round_trips", s.round_trips}});
  }
  std::ofstream out(a.json_path);
  out << j.dump(2) << "\n";
  if (!out) return Status(StatusCode::kIoError, a.json_path + ": write failed");
  return Status::ok();
}

int run(const BenchArgs& a) {
  if (Status st = validate_model_args(a.model); !st) return report_error(st, kExitUsage);
  if (a.reps < 1) return report_error(Status::invalid("--reps: must be >= 1"), kExitUsage);
  if (a.depth < 0) return report_error(Status::invalid("--depth: must be >= 0"), kExitUsage);
  for (int64_t n : a.pp) {
    if (n < 0) return report_error(Status::invalid("--pp: sizes must be >= 0 (0: no prefill test)"), kExitUsage);
  }
  for (int64_t n : a.tg) {
    if (n < 1) return report_error(Status::invalid("--tg: sizes must be >= 1"), kExitUsage);
  }
  for (int t : a.threads) {
    if (t < 1 || t > 256) return report_error(Status::invalid("--bench-threads: must be 1..256"), kExitUsage);
  }
  auto loaded = load_model(a.model);
  if (!loaded) return report_error(loaded.status(), kExitFailure);
  const model::Model& m = *(*loaded)->model;
  const int64_t bytes_per_token = m.weight_bytes();
  const model::MemorySpec kv = kv_cache_spec(a.model);

  MachineInfo machine;
  const CpuFeatures cpu = detect_cpu();
  machine.cpu = cpu.brand;
  machine.features = cpu.summary();
  machine.probe_bytes = a.probe_mib << 20;
  BandwidthProbe probe(static_cast<size_t>(machine.probe_bytes), cpu.avx2);

  std::printf("model: %s\n", m.config().summary().c_str());
  if (Result<std::unique_ptr<model::Memory>> probe_mem = m.make_memory(1, 1, kv.kind, kv.options); probe_mem) {
    std::printf("KV cache: %s, %lld bytes per token; depth %lld\n", model::memory_spec_name(kv).c_str(),
                static_cast<long long>((*probe_mem)->bytes_per_token()), static_cast<long long>(a.depth));
  }
  std::printf("weights streamed per decoded token: %.1f MiB (block linears %.1f MiB)\n",
              static_cast<double>(bytes_per_token) / 1048576.0, static_cast<double>(m.block_weight_bytes()) / 1048576.0);
  std::printf("%7s  %-7s %12s %10s %12s %10s %10s\n", "threads", "test", "tokens/s", "± sd", "read GB/s", "% floor",
              "trips");
  std::vector<Sample> samples;
  for (int t : a.threads) {
    ThreadPool pool(t);
    const BandwidthResult bw = probe.measure(pool, 5);
    machine.bandwidth.push_back(bw);
    std::printf("%7d  %-7s %12s %10s %12.1f %10s\n", t, "probe", "", "", bw.median_gbps, "");
    const auto measure = [&](bool prefill, int64_t n) -> Status {
      if (Result<Timed> warm = run_once(m, kv, 0, prefill, std::min<int64_t>(n, 16), pool); !warm) return warm.status();
      std::vector<Timed> runs;
      const CommStats before = a.model.comm != nullptr ? a.model.comm->stats() : CommStats{};
      double wall = 0.0;
      for (int r = 0; r < a.reps; ++r) {
        Result<Timed> v = run_once(m, kv, a.depth, prefill, n, pool);
        if (!v) return v.status();
        runs.push_back(*v);
        wall += static_cast<double>(n) / v->tps;
      }
      if (a.model.comm != nullptr && a.model.comm->size() > 1) {
        print_comm_line(before, a.model.comm->stats(), static_cast<double>(n) * a.reps, wall);
      }
      std::sort(runs.begin(), runs.end(), [](const Timed& x, const Timed& y) { return x.tps < y.tps; });
      Sample s;
      s.test = (prefill ? "pp" : "tg") + std::to_string(n);
      s.threads = t;
      s.median_tps = runs[runs.size() / 2].tps;
      s.round_trips = runs[runs.size() / 2].round_trips;
      double mean = 0.0;
      for (const Timed& v : runs) mean += v.tps / static_cast<double>(runs.size());
      for (const Timed& v : runs) s.stddev_tps += (v.tps - mean) * (v.tps - mean) / static_cast<double>(runs.size());
      s.stddev_tps = std::sqrt(s.stddev_tps);
      const double gbps = prefill ? 0.0 : static_cast<double>(bytes_per_token) * s.median_tps / 1e9;
      if (!prefill && bw.median_gbps > 0.0) s.floor_fraction = gbps / bw.median_gbps;
      if (prefill) {
        std::printf("%7d  %-7s %12.1f %10.1f %12s %10s %10.0f\n", t, s.test.c_str(), s.median_tps, s.stddev_tps, "", "",
                    s.round_trips);
      } else {
        std::printf("%7d  %-7s %12.1f %10.1f %12.1f %9.0f%% %10.0f\n", t, s.test.c_str(), s.median_tps, s.stddev_tps,
                    gbps, 100.0 * s.floor_fraction, s.round_trips);
      }
      std::fflush(stdout);
      samples.push_back(s);
      return Status::ok();
    };
    for (int64_t n : a.pp) {
      if (n == 0) continue;
      if (Status s = measure(true, n); !s) return report_error(s, kExitFailure);
    }
    for (int64_t n : a.tg) {
      if (Status s = measure(false, n); !s) return report_error(s, kExitFailure);
    }
  }
  std::printf("%% floor: weight bytes per token x tokens/s over the probed read bandwidth (KV cache and\n"
              "activations not counted; decode of a 135M model is partly compute- and sync-bound).\n"
              "trips: thread-pool round trips (jobs handed to the worker threads) per decoded token (tg) or\n"
              "per prefill pass (pp); none on 1 thread.\n");

  if (!a.json_path.empty()) {
    if (Status st = write_json(a, m, kv, machine, samples); !st) return report_error(st, kExitFailure);
  }
  return 0;
}

}  // namespace

Subcommand register_bench(CLI::App& app, Communicator& comm) {
  auto args = std::make_shared<BenchArgs>();
  args->model.comm = &comm;
  CLI::App* sub = app.add_subcommand(
      "bench",
      "Prefill and decode throughput of a model: ppN runs N prompt tokens as one batched pass, tgN\n"
      "decodes N tokens one at a time; for each thread count, with the weight bytes per token and\n"
      "the share of the read bandwidth probed in the same run.");
  add_model_options(sub, args->model, "pp/tg size + 1");
  sub->add_option("--pp", args->pp, "Prefill sizes (0: none)")->delimiter(',')->default_str("128,512");
  sub->add_option("--tg", args->tg, "Decode lengths")->delimiter(',')->default_str("128");
  sub->add_option("--bench-threads", args->threads, "Thread counts to run")->delimiter(',')->default_str("1,2");
  sub->add_option("--reps", args->reps, "Timed runs per test (median reported)")->default_str("3");
  sub->add_option("--probe-mib", args->probe_mib, "Bandwidth probe size in MiB")->default_str("512");
  sub->add_option("--json", args->json_path, "Also write the results as JSON");
  sub->add_option("--depth", args->depth, "Positions prefilled (untimed) before each test: tgN then decodes at that context")
      ->default_str("0");
  return Subcommand{sub, [args] { return run(*args); }, /*tensor_parallel=*/true};
}

}  // namespace lutq::apps
