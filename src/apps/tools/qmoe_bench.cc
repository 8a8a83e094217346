// Test tool (not installed): times the QMoE kernel (kernels/qmoe) against 2-bit BCQ LUT-GEMM
// (kernels::BcqLinear, fast int8 tables, g = 128, or 64 where k = 576, no offset) at MoE expert
// shapes, and the QMoE matrix decoded to BCQ per call (qmoe_gemm_lut, exact tables) at every m.
//
//   lutq_qmoe_bench [shapes=576x1536,1536x576,2048x1408] [m=1,4] [isa=avx512,avx2] [zeros=0.9]
//                   [calls=201] [ternary=mse|maxabs] [dictionary entries=65536]
// Weights: N(0, 1) rows, ternary RTN (mse grid with at least `zeros` zeros per row, or the
// maxabs grid), one dictionary per shape built over the experts' symbols. Two regimes: "hot"
// times one expert over and over (weights in cache), "cold" cycles through enough copies of the
// expert (each its own memory; the dictionary shared, as in a QMoE model) that the weights of
// both forms exceed 128 MiB, as MoE decoding reads a different expert each step. Medians of
// per-call times; GB/s = weight bytes streamed per call / median time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "format/qmoe_code.h"
#include "kernels/dense/dense_gemm.h"
#include "kernels/linear.h"
#include "kernels/qmoe/qmoe_gemm.h"
#include "quant/quantize.h"
#include "quant/ternary.h"

namespace lutq {
namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double median_ms(int64_t calls, int64_t copies, Fn&& fn) {
  for (int64_t i = 0; i < std::min<int64_t>(copies, 8); ++i) fn(i);
  std::vector<double> t(static_cast<size_t>(calls));
  for (int64_t i = 0; i < calls; ++i) {
    const auto t0 = Clock::now();
    fn(i % copies);
    t[static_cast<size_t>(i)] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }
  std::nth_element(t.begin(), t.begin() + calls / 2, t.end());
  return t[static_cast<size_t>(calls / 2)];
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

// The uncompressed baseline (the paper's reference point): fp32 dense GEMM, AVX2+FMA.
void bench_dense(const std::vector<float>& w, int64_t n, int64_t k, const std::vector<int64_t>& ms, int64_t calls,
                 ThreadPool& pool) {
  const int64_t bytes = n * k * static_cast<int64_t>(sizeof(float));
  const int64_t copies = (int64_t{128} << 20) / bytes + 1;
  std::vector<std::vector<float>> wc(static_cast<size_t>(copies), w);
  std::vector<float> x(static_cast<size_t>(4 * k), 0.5f), y(static_cast<size_t>(4 * n));
  for (int64_t m : ms) {
    x.resize(static_cast<size_t>(m * k), 0.5f);
    y.resize(static_cast<size_t>(m * n));
    for (int cold = 0; cold < 2; ++cold) {
      const double t = median_ms(calls, cold ? copies : 1, [&](int64_t i) {
        kernels::dense_gemm(kernels::DenseWeights{wc[static_cast<size_t>(i)].data(), n, k}, x.data(), m, y.data(), pool, true);
      });
      std::printf("  dense fp32 (avx2) m=%-2lld %-4s %.4f ms (%.1f GB/s)\n", static_cast<long long>(m), cold ? "cold" : "hot", t,
                  static_cast<double>(bytes) / t * 1e-6);
    }
  }
}

int bench_shape(int64_t n, int64_t k, const std::vector<int64_t>& ms, const std::vector<kernels::Isa>& isas,
                const quant::TernaryOptions& topt, int64_t calls, int64_t entries, ThreadPool& pool) {
  std::mt19937 rng(static_cast<uint32_t>(n * 31 + k));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& v : w) v = nd(rng);
  Result<format::TernaryMatrix> t = quant::ternary_rtn(w.data(), n, k, topt, &pool);
  if (!t) return std::fprintf(stderr, "error: %s\n", t.status().message().c_str()), 1;
  const format::TernaryMatrix* mats[] = {&*t};
  format::DictionaryOptions dopt;
  dopt.max_entries = entries;
  Result<format::QmoeDictionary> d = format::build_dictionary(mats, dopt);
  if (!d) return 1;
  auto dict = std::make_shared<const format::QmoeDictionary>(std::move(*d));
  Result<format::QmoeMatrix> coded = format::encode(*t, dict);
  Result<std::shared_ptr<const kernels::QmoeTable>> table = kernels::make_qmoe_table(dict);
  const int64_t g = k % 128 == 0 ? 128 : 64;  // 576 = 9 x 64
  quant::QuantOptions bopt{quant::Method::kGreedy, format::BcqConfig{2, g, format::Orientation::kPerOC, false}, 0};
  Result<format::BcqMatrix> bcq = quant::quantize(w.data(), n, k, bopt, &pool);
  if (!coded || !table || !bcq) return std::fprintf(stderr, "error preparing %lldx%lld\n", static_cast<long long>(n), static_cast<long long>(k)), 1;
  std::printf("%lldx%lld: zeros %.3f, qmoe %.3f bpw (codes %.3f), dictionary %lld entries; bcq q=2 g=%lld %.3f bpw\n",
              static_cast<long long>(n), static_cast<long long>(k), t->zero_fraction(), coded->bits_per_weight(),
              coded->code_bits_per_weight(), static_cast<long long>(dict->size()), static_cast<long long>(g),
              bcq->bits_per_weight());
  bench_dense(w, n, k, ms, calls, pool);
  for (kernels::Isa isa : isas) {
    Result<kernels::BcqLinear> b1 = kernels::BcqLinear::create(*bcq, isa, kernels::Precision::kFast, kernels::GemmPath::kLut);
    if (!b1 || !kernels::qmoe_available(isa, detect_cpu())) continue;
    const int64_t bcq_bytes = b1->weight_bytes();
    Result<kernels::QmoeWeights> q1 = kernels::make_qmoe_weights(std::make_shared<const format::QmoeMatrix>(*coded), *table);
    if (!q1) return 1;
    const int64_t qmoe_bytes = q1->weight_bytes();
    const int64_t copies = std::max<int64_t>(2, (int64_t{128} << 20) / std::min(bcq_bytes, qmoe_bytes) + 1);
    std::vector<kernels::BcqLinear> bl;
    std::vector<kernels::QmoeWeights> ql;
    for (int64_t c = 0; c < copies; ++c) {
      bl.push_back(std::move(*kernels::BcqLinear::create(*bcq, isa, kernels::Precision::kFast, kernels::GemmPath::kLut)));
      ql.push_back(std::move(*kernels::make_qmoe_weights(std::make_shared<const format::QmoeMatrix>(*coded), *table)));
    }
    for (int64_t m : ms) {
      std::vector<float> x(static_cast<size_t>(m * k));
      for (float& v : x) v = nd(rng);
      std::vector<float> y(static_cast<size_t>(m * n));
      for (int cold = 0; cold < 2; ++cold) {
        const int64_t cp = cold ? copies : 1;
        const double tb = median_ms(calls, cp, [&](int64_t i) { (void)bl[static_cast<size_t>(i)].forward(x.data(), m, y.data(), pool); });
        const double tq = median_ms(calls, cp, [&](int64_t i) {
          (void)kernels::qmoe_gemm(ql[static_cast<size_t>(i)], x.data(), m, y.data(), pool, isa);
        });
        // The decode-to-BCQ route alone, at every m (qmoe_gemm takes it from kQmoeLutFromRows).
        const double tl = median_ms(calls, cp, [&](int64_t i) {
          (void)kernels::qmoe_gemm_lut(ql[static_cast<size_t>(i)], x.data(), m, y.data(), pool, isa);
        });
        std::printf("  %-6s m=%-2lld %-4s  bcq2 %.4f ms (%.1f GB/s)  qmoe %.4f ms (%.1f GB/s)  qmoe/bcq %.2f  "
                    "via bcq %.4f ms\n",
                    kernels::isa_name(isa), static_cast<long long>(m), cold ? "cold" : "hot", tb,
                    static_cast<double>(bcq_bytes) / tb * 1e-6, tq, static_cast<double>(qmoe_bytes) / tq * 1e-6, tq / tb, tl);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

int run(int argc, char** argv) {
  const std::vector<std::string> shapes = split(argc > 1 ? argv[1] : "576x1536,1536x576,2048x1408");
  std::vector<int64_t> ms;
  for (const std::string& s : split(argc > 2 ? argv[2] : "1,4")) ms.push_back(std::stoll(s));
  std::vector<kernels::Isa> isas;
  for (const std::string& s : split(argc > 3 ? argv[3] : "avx512,avx2")) {
    Result<kernels::Isa> isa = kernels::parse_isa(s);
    if (!isa) return std::fprintf(stderr, "error: %s\n", isa.status().message().c_str()), 2;
    isas.push_back(*isa);
  }
  quant::TernaryOptions topt;
  topt.min_zero_fraction = argc > 4 ? std::stod(argv[4]) : 0.9;
  const int64_t calls = argc > 5 ? std::stoll(argv[5]) : 201;
  if (argc > 6 && std::string(argv[6]) == "maxabs") topt.scale = quant::TernaryScale::kMaxAbs;
  const int64_t entries = argc > 7 ? std::stoll(argv[7]) : format::kQmoeMaxEntries;
  ThreadPool pool(1);
  std::printf("cpu: %s (%s), 1 thread\n", detect_cpu().brand.c_str(), detect_cpu().summary().c_str());
  for (const std::string& s : shapes) {
    const size_t x = s.find('x');
    if (x == std::string::npos) return std::fprintf(stderr, "error: shape %s is not NxK\n", s.c_str()), 2;
    if (bench_shape(std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1)), ms, isas, topt, calls, entries, pool) != 0) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace lutq

int main(int argc, char** argv) { return lutq::run(argc, argv); }
