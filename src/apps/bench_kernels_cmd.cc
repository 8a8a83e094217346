// Command line of `lutq bench-kernels`: options, their defaults (and --quick's), and validation
// into BenchOptions. The benchmark itself is in bench_kernels.cc.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "apps/bench_kernels.h"
#include "apps/commands.h"
#include "core/cpu.h"
#include "format/bcq_matrix.h"
#include "kernels/linear.h"

namespace lutq::apps {
namespace {

// The options as typed; resolved and validated by resolve().
struct RawArgs {
  std::vector<std::string> shapes;
  std::vector<std::string> bits;
  std::vector<std::string> groups;
  std::vector<std::string> ms;
  std::vector<std::string> threads;
  std::vector<std::string> isas;
  std::vector<std::string> precisions;
  std::vector<std::string> paths;
  std::vector<std::string> kinds;
  std::vector<std::string> regimes;
  int reps = 0;  // 0: adaptive
  bool quick = false;
  bool baseline = true;
  std::string json_path;
};

// The first line of a sysfs file, "" if it cannot be read.
std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Size of the largest-level data or unified cache of CPU 0 as Linux reports it
// (/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}, sizes like "32768K"); 0 if unknown.
int64_t last_level_cache_bytes() {
  int best_level = 0;
  int64_t best = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    if (type != "Data" && type != "Unified") continue;
    const std::string size = read_line(dir + "size");
    char* end = nullptr;
    int64_t bytes = std::strtoll(size.c_str(), &end, 10);
    if (*end == 'K') bytes <<= 10;
    if (*end == 'M') bytes <<= 20;
    if (*end == 'G') bytes <<= 30;
    const int lv = std::atoi(level.c_str());
    if (bytes > 0 && lv >= best_level) {
      best_level = lv;
      best = bytes;
    }
  }
  return best;
}

Result<int64_t> parse_int(std::string_view text, std::string_view what, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) {
    return Status::invalid(std::string(what) + ": '" + std::string(text) + "' is not an integer");
  }
  if (v < lo || v > hi) {
    return Status::invalid(std::string(what) + ": " + std::to_string(v) + " is out of range [" + std::to_string(lo) +
                           ", " + std::to_string(hi) + "]");
  }
  return v;
}

Result<Shape> parse_shape(std::string_view text) {
  const size_t x = text.find_first_of("xX");
  if (x == std::string_view::npos) {
    return Status::invalid("--shapes: malformed shape '" + std::string(text) + "': expected NxK, e.g. 4096x11008");
  }
  Result<int64_t> n = parse_int(text.substr(0, x), "--shapes: N", 1, int64_t{1} << 20);
  Result<int64_t> k = parse_int(text.substr(x + 1), "--shapes: K", 1, int64_t{1} << 20);
  if (!n || !k) {
    return Status::invalid("--shapes: malformed shape '" + std::string(text) + "': expected NxK with positive integers");
  }
  return Shape{*n, *k};
}

// Parses every entry of a list option with `parse`, or an error naming the entry.
template <typename T, typename F>
Result<std::vector<T>> parse_list(const std::vector<std::string>& items, F parse) {
  std::vector<T> out;
  for (const std::string& s : items) {
    auto r = parse(s);
    if (!r) return r.status();
    if (std::find(out.begin(), out.end(), *r) == out.end()) out.push_back(*r);
  }
  return out;
}

// Options not typed fall back to the defaults, or to --quick's where --quick was given.
Result<BenchOptions> resolve(RawArgs raw, const CLI::App& cli) {
  auto given = [&cli](const char* name) { return cli.get_option(name)->count() > 0; };
  if (raw.quick) {
    if (!given("--shapes")) raw.shapes = {"4096x4096"};
    if (!given("--bits")) raw.bits = {"3"};
    if (!given("--m")) raw.ms = {"1", "8"};
    if (!given("--threads")) raw.threads = {"2"};
  }
  BenchOptions o;
  if (raw.quick && raw.reps == 0) {
    o.target_seconds = 0.05;
    o.min_reps = 5;
    o.probe_passes = 3;
  }
  if (raw.reps < 0) return Status::invalid("--reps: must be at least 1 (got " + std::to_string(raw.reps) + ")");
  if (cli.get_option("--reps")->count() > 0 && raw.reps == 0) return Status::invalid("--reps: must be at least 1 (got 0)");
  o.reps = raw.reps;
  o.baseline = raw.baseline;
  // The DRAM regime rotates over at least 4x the last-level cache the OS reports (and never less
  // than 512 MiB), so no copy is still cached when it comes round again.
  o.llc_bytes = last_level_cache_bytes();
  o.dram_bytes = std::max(o.dram_bytes, 4 * o.llc_bytes);
  o.json_path = raw.json_path;

  auto shapes = parse_list<Shape>(raw.shapes, parse_shape);
  if (!shapes) return shapes.status();
  o.shapes = *shapes;
  auto bits = parse_list<int64_t>(raw.bits, [](const std::string& s) { return parse_int(s, "--bits", 1, format::kMaxBits); });
  if (!bits) return bits.status();
  for (int64_t b : *bits) o.bits.push_back(static_cast<int>(b));
  auto groups = parse_list<int64_t>(raw.groups, [](const std::string& s) { return parse_int(s, "--group", 1, int64_t{1} << 20); });
  if (!groups) return groups.status();
  o.groups = *groups;
  auto ms = parse_list<int64_t>(raw.ms, [](const std::string& s) { return parse_int(s, "--m", 1, 4096); });
  if (!ms) return ms.status();
  o.ms = *ms;
  auto threads = parse_list<int64_t>(raw.threads, [](const std::string& s) { return parse_int(s, "--threads", 1, 256); });
  if (!threads) return threads.status();
  for (int64_t t : *threads) o.threads.push_back(static_cast<int>(t));

  const CpuFeatures cpu = detect_cpu();
  if (raw.isas.empty()) {
    for (kernels::Isa isa : kernels::available_isas(cpu)) {
      // CPU backends only by default: the CUDA backend has its own benchmark (lutq_bench_cuda).
      if (isa != kernels::Isa::kRef && isa != kernels::Isa::kScalar && isa != kernels::Isa::kCuda) o.isas.push_back(isa);
    }
  } else {
    auto isas = parse_list<kernels::Isa>(raw.isas, [](const std::string& s) { return kernels::parse_isa(s); });
    if (!isas) return Status::invalid("--isa: " + isas.status().message());
    for (kernels::Isa isa : *isas) {
      Result<kernels::Isa> ok = kernels::select_isa(cpu, isa);
      if (!ok) return Status::invalid("--isa: " + ok.status().message());
    }
    o.isas = *isas;
  }
  auto precisions = parse_list<kernels::Precision>(raw.precisions, [](const std::string& s) { return kernels::parse_precision(s); });
  if (!precisions) return Status::invalid("--precision: " + precisions.status().message());
  o.precisions = *precisions;
  if (!raw.paths.empty()) {
    o.paths.clear();
    for (const std::string& p : raw.paths) {
      if (p == "auto" || p == "lut" || p == "int8") {
        o.paths.emplace_back(p == "auto" ? kernels::GemmPath::kAuto
                             : p == "lut" ? kernels::GemmPath::kLut
                                          : kernels::GemmPath::kInt8Gemm);
      } else {
        return Status::invalid("--path: unknown path '" + p + "': expected auto, lut or int8");
      }
    }
  }
  auto kinds = parse_list<WeightKind>(raw.kinds, [](const std::string& s) -> Result<WeightKind> {
    if (s == "bcq") return WeightKind::kBcq;
    if (s == "uniform") return WeightKind::kUniform;
    if (s == "bcq-s8") return WeightKind::kBcqCoded;
    return Status::invalid("--kind: unknown weight kind '" + s + "': expected bcq, bcq-s8 or uniform");
  });
  if (!kinds) return kinds.status();
  o.kinds = *kinds;
  auto regimes = parse_list<Regime>(raw.regimes, [](const std::string& s) -> Result<Regime> {
    if (s == "dram") return Regime::kDram;
    if (s == "hot") return Regime::kHot;
    return Status::invalid("--regime: unknown regime '" + s + "': expected dram or hot");
  });
  if (!regimes) return regimes.status();
  o.regimes = *regimes;

  // Every explicit group size must suit every shape; the default adapts per shape.
  for (const Shape& s : o.shapes) {
    for (int q : o.bits) {
      for (int64_t g : o.groups) {
        format::BcqConfig cfg;
        cfg.q = q;
        cfg.g = g;
        if (Status st = format::validate_config(cfg, s.n, s.k); !st) {
          return Status::invalid("--group " + std::to_string(g) + " does not suit shape " + s.text() + ": " + st.message());
        }
      }
    }
  }
  return o;
}

}  // namespace

const char* kind_name(WeightKind kind) {
  switch (kind) {
    case WeightKind::kBcq: return "bcq";
    case WeightKind::kBcqCoded: return "bcq-s8";
    default: return "uniform";
  }
}
const char* regime_name(Regime regime) { return regime == Regime::kDram ? "dram" : "hot"; }

Subcommand register_bench_kernels(CLI::App& app) {
  auto raw = std::make_shared<RawArgs>();
  raw->shapes = {"4096x4096", "11008x4096", "4096x11008", "576x576", "1536x576", "576x1536"};
  raw->bits = {"2", "3", "4"};
  raw->ms = {"1", "8", "32"};
  raw->threads = {"1", "2"};
  raw->precisions = {"fast"};
  raw->kinds = {"bcq", "uniform"};
  raw->regimes = {"dram", "hot"};

  CLI::App* sub = app.add_subcommand(
      "bench-kernels",
      "Time the LUT GEMM kernels on random BCQ weights against dense fp32 (our AVX2 kernel and OpenBLAS)\n"
      "and the read bandwidth probed in the same run. One row per (shape, kind, q, g, m, threads, isa,\n"
      "precision, regime): median time and min-max, weight bytes, GB/s, share of the bandwidth floor,\n"
      "speedups. Lists take commas: --bits 2,3 --m 1,8.");
  sub->add_option("--shapes", raw->shapes, "Weight shapes NxK (n outputs, k inputs)")
      ->delimiter(',')
      ->type_name("NxK,...")
      ->default_str("4096x4096,11008x4096,4096x11008,576x576,1536x576,576x1536");
  sub->add_option("--bits", raw->bits, "Bit-planes q, 1..8")->delimiter(',')->type_name("INT,...")->default_str("2,3,4");
  sub->add_option("--group", raw->groups, "Group size g along k (32, 64, 128, 256 or k); must divide k")
      ->delimiter(',')
      ->type_name("INT,...")
      ->default_str("128, or 64/32/k where 128 does not divide k");
  sub->add_option("--m", raw->ms, "Activation rows per call")->delimiter(',')->type_name("INT,...")->default_str("1,8,32");
  sub->add_option("--threads", raw->threads, "Thread counts")->delimiter(',')->type_name("INT,...")->default_str("1,2");
  sub->add_option("--isa", raw->isas, "Backends: ref, scalar, avx2, avx512")
      ->delimiter(',')
      ->type_name("ISA,...")
      ->default_str("every SIMD backend this CPU runs");
  sub->add_option("--precision", raw->precisions, "Table precision: fast (int8) or exact (fp32)")
      ->delimiter(',')
      ->type_name("P,...")
      ->default_str("fast");
  sub->add_option("--path", raw->paths,
                  "GEMM paths: auto (the policy), lut, int8 (where the matrix and ISA allow it; LUT elsewhere)")
      ->delimiter(',')
      ->type_name("PATH,...")
      ->default_str("auto");
  sub->add_option("--kind", raw->kinds, "Weights: bcq (no offset), bcq-s8 (bcq with 8-bit compressed scales) or uniform (a uniform grid "
                  "with offset, as RTN stores it)")
      ->delimiter(',')
      ->type_name("KIND,...")
      ->default_str("bcq,uniform");
  sub->add_option("--regime", raw->regimes, "dram (rotate over > max(512 MiB, 4x the L3 size from sysfs) of copies) or hot (one warm copy)")
      ->delimiter(',')
      ->type_name("REGIME,...")
      ->default_str("dram,hot");
  sub->add_option("--reps", raw->reps, "Timed calls per row (median reported)")
      ->type_name("INT")
      ->default_str("adaptive: ~0.2 s per row, at least 10");
  sub->add_flag("--quick", raw->quick, "Short smoke run: 4096x4096, q=3, m=1,8, 2 threads, few reps (typed options win)");
  sub->add_option("--json", raw->json_path, "Also write all rows and machine info to this JSON file")->type_name("FILE");
  sub->add_flag("--baseline,!--no-baseline", raw->baseline, "Time (or skip) the dense fp32 baselines; default: time them")
      ->type_name("");

  return {sub, [raw, sub] {
            Result<BenchOptions> options = resolve(*raw, *sub);
            if (!options) return report_error(options.status(), kExitUsage);
            if (Status s = run_bench_kernels(*options); !s) return report_error(s, kExitFailure);
            return 0;
          }};
}

}  // namespace lutq::apps
