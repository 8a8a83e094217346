#include "quant/quantize.h"

#include <gtest/gtest.h>

#include "support/random_bcq.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"

namespace lutq::quant {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

constexpr Method kAllMethods[] = {Method::kRtn, Method::kGreedy, Method::kAlternating};

// A fresh seed per test (LUTQ_TEST_SEED=... reproduces one), recorded in the XML output; each
// test also passes it to SCOPED_TRACE so every failure prints it.
uint32_t fresh_seed() {
  uint32_t seed = 0;
  if (const char* env = std::getenv("LUTQ_TEST_SEED")) {
    seed = static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
  } else {
    seed = std::random_device{}();
  }
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

std::string seed_note(uint32_t seed) { return "LUTQ_TEST_SEED=" + std::to_string(seed); }

std::vector<float> gaussian(int64_t n, int64_t k, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = dist(rng);
  return w;
}

BcqMatrix quantize_ok(const std::vector<float>& w, int64_t n, int64_t k, Method method, const BcqConfig& cfg,
                      ThreadPool* pool = nullptr) {
  QuantOptions opt;
  opt.method = method;
  opt.cfg = cfg;
  Result<BcqMatrix> r = quantize(w.data(), n, k, opt, pool);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  if (!r) return BcqMatrix{};
  EXPECT_TRUE(format::validate(*r).is_ok());
  return std::move(r).value();
}

double rel_error(const std::vector<float>& w, const std::vector<float>& d) {
  double num = 0.0;
  double den = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double e = static_cast<double>(w[i]) - d[i];
    num += e * e;
    den += static_cast<double>(w[i]) * w[i];
  }
  return std::sqrt(num / den);
}

double stored_alpha(const BcqMatrix& m, int64_t set, int i) {
  return fp16_to_fp32(m.alpha[static_cast<size_t>(set * m.cfg.q + i)]);
}
double stored_offset(const BcqMatrix& m, int64_t set) {
  return m.cfg.has_offset ? fp16_to_fp32(m.offset[static_cast<size_t>(set)]) : 0.0;
}
unsigned code_of(const BcqMatrix& m, int64_t r, int64_t c) {
  unsigned code = 0;
  for (int i = 0; i < m.cfg.q; ++i) code |= static_cast<unsigned>(m.bit(i, r, c)) << i;
  return code;
}
// Value of code `code` in the grid of scale set `set`, summed exactly in double.
double grid_value(const BcqMatrix& m, int64_t set, unsigned code) {
  double v = stored_offset(m, set);
  for (int i = 0; i < m.cfg.q; ++i) v += ((code >> i) & 1u) ? stored_alpha(m, set, i) : -stored_alpha(m, set, i);
  return v;
}

// Squared error of every scale set.
std::vector<double> set_errors(const BcqMatrix& m, const std::vector<float>& w) {
  const std::vector<float> d = format::dequantize(m);
  std::vector<double> err(static_cast<size_t>(m.num_scale_sets()), 0.0);
  for (int64_t r = 0; r < m.n; ++r) {
    for (int64_t c = 0; c < m.k; ++c) {
      const double e = static_cast<double>(w[static_cast<size_t>(r * m.k + c)]) - d[static_cast<size_t>(r * m.k + c)];
      err[static_cast<size_t>(m.scale_set(r, c))] += e * e;
    }
  }
  return err;
}

TEST(QuantMethod, NamesRoundTrip) {
  for (Method m : kAllMethods) {
    Result<Method> p = parse_method(method_name(m));
    ASSERT_TRUE(p.is_ok());
    EXPECT_EQ(*p, m);
  }
  Result<Method> bad = parse_method("gptq-ish");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("gptq-ish"), std::string::npos);
}

TEST(QuantError, FallsStrictlyWithBits) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 64;
  const int64_t k = 512;
  const std::vector<float> w = gaussian(n, k, rng);
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (Method method : kAllMethods) {
      for (bool offset : {false, true}) {
        if (method == Method::kRtn && !offset) continue;  // rtn always stores an offset
        const int64_t g = o == Orientation::kPerOC ? 128 : 64;  // per-IC groups run along n = 64
        double prev = std::numeric_limits<double>::infinity();
        for (int q = 1; q <= 4; ++q) {
          const BcqMatrix m = quantize_ok(w, n, k, method, BcqConfig{q, g, o, offset});
          const double e = rel_error(w, format::dequantize(m));
          SCOPED_TRACE(std::string(method_name(method)) + " " + format::describe(m));
          EXPECT_LT(e, prev);
          // Zero predicts W with relative error 1. Min/max RTN at q=1 is worse than that (its two
          // levels sit near ±2.5σ), and so is greedy, which never clips (its 1-plane planes reach
          // only mean|w| and lose to the min/max grid); alternating is better.
          if (method == Method::kAlternating) {
            EXPECT_LT(e, 1.0);
          }
          prev = e;
        }
      }
    }
  }
}

TEST(QuantAlternating, NeverWorseThanGreedy) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 64;
  const int64_t k = 512;
  std::vector<float> w = gaussian(n, k, rng);
  // Heavy tails in a few rows make the greedy fit clearly suboptimal.
  std::student_t_distribution<float> heavy(2.0f);
  for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(5 * k + c)] = heavy(rng);
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (bool offset : {false, true}) {
      for (int q = 1; q <= 6; ++q) {
        const BcqConfig cfg = BcqConfig{q, o == Orientation::kPerOC ? 128 : 32, o, offset};
        const BcqMatrix greedy = quantize_ok(w, n, k, Method::kGreedy, cfg);
        const BcqMatrix alt = quantize_ok(w, n, k, Method::kAlternating, cfg);
        SCOPED_TRACE(format::describe(alt));
        const std::vector<double> eg = set_errors(greedy, w);
        const std::vector<double> ea = set_errors(alt, w);
        double sum_g = 0.0;
        double sum_a = 0.0;
        for (size_t s = 0; s < eg.size(); ++s) {
          EXPECT_LE(ea[s], eg[s] * (1.0 + 1e-6) + 1e-12) << "scale set " << s;
          sum_g += eg[s];
          sum_a += ea[s];
        }
        EXPECT_LE(sum_a, sum_g);
        if (q >= 2) {
          EXPECT_LT(sum_a, 0.99 * sum_g);  // and it is genuinely better
        }
      }
    }
  }
}

TEST(QuantRtn, UniformGridAndNearestPoint) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 64;
  const int64_t k = 256;
  std::vector<float> w = gaussian(n, k, rng, 0.02f);
  for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(c)] += 0.5f;  // an off-centre row
  for (int64_t c = 0; c < 64; ++c) w[static_cast<size_t>(k + c)] = 0.1f;  // a constant group
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (int q = 1; q <= 8; ++q) {
      const BcqMatrix m = quantize_ok(w, n, k, Method::kRtn, BcqConfig{q, 64, o, false});
      SCOPED_TRACE(format::describe(m));
      ASSERT_TRUE(m.cfg.has_offset);
      const std::vector<float> d = format::dequantize(m);
      const double centre = 0.5 * ((1 << q) - 1);
      std::vector<float> lo(static_cast<size_t>(m.num_scale_sets()), std::numeric_limits<float>::infinity());
      std::vector<float> hi(lo.size(), -std::numeric_limits<float>::infinity());
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          const auto s = static_cast<size_t>(m.scale_set(r, c));
          lo[s] = std::min(lo[s], w[static_cast<size_t>(r * k + c)]);
          hi[s] = std::max(hi[s], w[static_cast<size_t>(r * k + c)]);
        }
      }
      int failures = 0;
      for (int64_t r = 0; r < n && failures < 5; ++r) {
        for (int64_t c = 0; c < k && failures < 5; ++c) {
          const int64_t set = m.scale_set(r, c);
          const double a0 = stored_alpha(m, set, 0);
          for (int i = 1; i < q; ++i) ASSERT_EQ(stored_alpha(m, set, i), std::ldexp(a0, i));
          const double step = 2.0 * a0;
          const double z = stored_offset(m, set);
          const unsigned code = code_of(m, r, c);
          const auto expect = static_cast<float>(z + step * (code - centre));
          const float x = w[static_cast<size_t>(r * k + c)];
          const float got = d[static_cast<size_t>(r * k + c)];
          if (got != expect) ++failures;
          EXPECT_EQ(got, expect) << "r=" << r << " c=" << c;
          if (x >= lo[static_cast<size_t>(set)] && x <= hi[static_cast<size_t>(set)]) {
            const double dist = std::fabs(static_cast<double>(x) - got);
            if (!(dist <= 0.5 * step * (1.0 + 1e-6))) ++failures;
            EXPECT_LE(dist, 0.5 * step * (1.0 + 1e-6)) << "r=" << r << " c=" << c << " step=" << step;
          }
        }
      }
    }
  }
  // The constant group is reproduced almost exactly.
  const BcqMatrix m = quantize_ok(w, n, k, Method::kRtn, BcqConfig{3, 64, Orientation::kPerOC, true});
  const std::vector<float> d = format::dequantize(m);
  for (int64_t c = 0; c < 64; ++c) EXPECT_NEAR(d[static_cast<size_t>(k + c)], 0.1f, 1e-6f);
}

// Weights dequantized from a block-quantized source (a GGUF Q4_K sub-block: w = d·q − m in fp32,
// codes q of 4 bits that need not reach both ends) keep their grid: RTN takes it instead of the
// range-covering one, so every weight is reproduced up to the fp16 rounding of α_0 and z.
TEST(QuantRtn, KeepsTheGridOfABlockQuantizedSource) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 16;
  const int64_t k = 256;
  const int64_t g = 32;
  std::uniform_real_distribution<float> step_d(0.002f, 0.02f);
  std::uniform_real_distribution<float> min_d(0.0f, 0.1f);
  std::uniform_int_distribution<int> lo_d(0, 4);
  std::uniform_int_distribution<int> hi_d(9, 15);
  std::vector<float> w(static_cast<size_t>(n * k));
  std::vector<float> step(static_cast<size_t>(n * k / g));
  for (int64_t grp = 0; grp < n * k / g; ++grp) {
    const float d = step_d(rng);
    const float m = min_d(rng);
    std::uniform_int_distribution<int> code(lo_d(rng), hi_d(rng));
    step[static_cast<size_t>(grp)] = d;
    for (int64_t e = 0; e < g; ++e) w[static_cast<size_t>(grp * g + e)] = d * static_cast<float>(code(rng)) - m;
  }
  const BcqMatrix m = quantize_ok(w, n, k, Method::kRtn, BcqConfig{4, g, Orientation::kPerOC, true});
  const std::vector<float> d = format::dequantize(m);
  double worst = 0.0;
  int64_t at = 0;
  for (int64_t i = 0; i < n * k; ++i) {
    const double rel = std::fabs(static_cast<double>(d[static_cast<size_t>(i)]) - w[static_cast<size_t>(i)]) /
                       step[static_cast<size_t>(i / g)];
    if (rel > worst) {
      worst = rel;
      at = i;
    }
  }
  // fp16 rounding: α_0 by 2^-11 relative (7.5 steps from the centre: 0.004 steps), z by half an
  // fp16 spacing (at most 2^-13 for |z| < 0.25: 0.03 of the smallest step).
  EXPECT_LT(worst, 0.05) << "worst element " << at << ": " << d[static_cast<size_t>(at)] << " for "
                         << w[static_cast<size_t>(at)] << " (source step " << step[static_cast<size_t>(at / g)] << ")";
  // Plain range-covering RTN would miss by up to half of its own step on such groups.
}

TEST(QuantConsistency, StoredFormIsNearestGridValue) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 64;
  const int64_t k = 128;
  const std::vector<float> w = gaussian(n, k, rng, 0.05f);
  for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
    for (Method method : kAllMethods) {
      for (bool offset : {false, true}) {
        for (int q = 1; q <= 4; ++q) {
          const BcqMatrix m = quantize_ok(w, n, k, method, BcqConfig{q, 32, o, offset});
          SCOPED_TRACE(std::string(method_name(method)) + " " + format::describe(m));
          const std::vector<float> d = format::dequantize(m);
          int failures = 0;
          for (int64_t r = 0; r < n && failures < 5; ++r) {
            for (int64_t c = 0; c < k && failures < 5; ++c) {
              const int64_t set = m.scale_set(r, c);
              const double x = w[static_cast<size_t>(r * k + c)];
              const double chosen = grid_value(m, set, code_of(m, r, c));
              double best = std::numeric_limits<double>::infinity();
              for (unsigned code = 0; code < (1u << q); ++code) {
                best = std::min(best, std::fabs(x - grid_value(m, set, code)));
              }
              const bool ok = d[static_cast<size_t>(r * k + c)] == static_cast<float>(chosen) &&
                              std::fabs(x - chosen) <= best + 1e-12;
              if (!ok) ++failures;
              EXPECT_EQ(d[static_cast<size_t>(r * k + c)], static_cast<float>(chosen)) << "r=" << r << " c=" << c;
              EXPECT_LE(std::fabs(x - chosen), best + 1e-12) << "r=" << r << " c=" << c;
            }
          }
        }
      }
    }
  }
}

TEST(QuantErrors, RejectBadInputWithClearMessage) {
  std::vector<float> w(64 * 256, 0.25f);
  auto expect_error = [&](int64_t n, int64_t k, const QuantOptions& opt, const std::string& needle) {
    Result<BcqMatrix> r = quantize(w.data(), n, k, opt);
    ASSERT_FALSE(r.is_ok()) << "expected an error mentioning " << needle;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  QuantOptions opt;
  opt.cfg = BcqConfig{0, 128, Orientation::kPerOC, false};
  expect_error(64, 256, opt, "q=0");
  opt.cfg.q = 9;
  expect_error(64, 256, opt, "q=9");
  opt.cfg = BcqConfig{3, 48, Orientation::kPerOC, false};
  expect_error(64, 240, opt, "g=48");
  opt.cfg = BcqConfig{3, 128, Orientation::kPerOC, false};
  expect_error(64, 192, opt, "g=128");  // k=192 is not a multiple of 128
  opt.cfg = BcqConfig{3, 32, Orientation::kPerIC, false};
  expect_error(48, 256, opt, "n=48");  // n=48 is not a multiple of 32
  opt.cfg = BcqConfig{3, 128, Orientation::kPerOC, false};
  opt.iterations = -1;
  expect_error(64, 256, opt, "iterations=-1");
  opt.iterations = 10;
  w[static_cast<size_t>(3 * 256 + 17)] = std::numeric_limits<float>::quiet_NaN();
  expect_error(64, 256, opt, "NaN");
  expect_error(64, 256, opt, "row 3, column 17");
  w[static_cast<size_t>(3 * 256 + 17)] = std::numeric_limits<float>::infinity();
  expect_error(64, 256, opt, "infinite");
  w[static_cast<size_t>(3 * 256 + 17)] = 1e6f;
  expect_error(64, 256, opt, "fp16 range");
  w[static_cast<size_t>(3 * 256 + 17)] = 0.25f;
  EXPECT_TRUE(quantize(w.data(), 64, 256, opt).is_ok());
}

TEST(QuantShapes, FullExtentGroupsAndHighBits) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 40;
  const int64_t k = 300;
  const std::vector<float> w = gaussian(n, k, rng);
  for (Method method : kAllMethods) {
    // One group per row (g = k) and one group per column (g = n), neither a multiple of 8.
    for (Orientation o : {Orientation::kPerOC, Orientation::kPerIC}) {
      const int64_t g = o == Orientation::kPerOC ? k : n;
      double prev = std::numeric_limits<double>::infinity();
      for (int q = 1; q <= 8; ++q) {
        const BcqMatrix m = quantize_ok(w, n, k, method, BcqConfig{q, g, o, true});
        SCOPED_TRACE(std::string(method_name(method)) + " " + format::describe(m));
        ASSERT_EQ(m.num_groups(), 1);
        const double e = rel_error(w, format::dequantize(m));
        EXPECT_LT(e, prev);
        prev = e;
      }
      if (method != Method::kGreedy) {
        EXPECT_LT(prev, 0.02);  // q=8
      }
    }
  }
}

TEST(QuantThreads, PoolGivesIdenticalResults) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  ThreadPool pool(2);
  const int64_t n = 128;
  const int64_t k = 100;  // per-IC: the last 8-column block is partial
  const std::vector<float> w = gaussian(n, k, rng);
  for (Method method : kAllMethods) {
    for (const BcqConfig& cfg : {BcqConfig{3, k, Orientation::kPerOC, false}, BcqConfig{4, 64, Orientation::kPerIC, true},
                                 BcqConfig{2, 32, Orientation::kPerIC, false}}) {
      const BcqMatrix a = quantize_ok(w, n, k, method, cfg);
      const BcqMatrix b = quantize_ok(w, n, k, method, cfg, &pool);
      SCOPED_TRACE(std::string(method_name(method)) + " " + format::describe(a));
      testing::expect_same_bcq(a, b);
    }
  }
}

// Builds W[n,k] whose every per-OC group (g along k) is exactly BCQ with fp16 scales: α_0 in
// [0.025, 0.05], then each next α_i = α_{i−1}·U(lo, hi), random bits, and a random fp16 offset
// when `offset`.
std::vector<float> planted_bcq(int64_t n, int64_t k, int64_t g, int q, double lo, double hi, bool offset,
                               std::mt19937& rng) {
  std::uniform_real_distribution<double> first(0.025, 0.05);
  std::uniform_real_distribution<double> ratio(lo, hi);
  std::uniform_real_distribution<double> centre(-0.05, 0.05);
  std::bernoulli_distribution coin(0.5);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t gi = 0; gi < k / g; ++gi) {
      double alpha[format::kMaxBits];
      alpha[0] = round_to_fp16(static_cast<float>(first(rng)));
      for (int i = 1; i < q; ++i) alpha[i] = round_to_fp16(static_cast<float>(alpha[i - 1] * ratio(rng)));
      const double z = offset ? round_to_fp16(static_cast<float>(centre(rng))) : 0.0;
      for (int64_t c = gi * g; c < (gi + 1) * g; ++c) {
        double v = z;
        for (int i = 0; i < q; ++i) v += coin(rng) ? alpha[i] : -alpha[i];
        w[static_cast<size_t>(r * k + c)] = static_cast<float>(v);  // exact: a short sum of fp16 values
      }
    }
  }
  return w;
}

struct PlantedResult {
  double greedy_error = 0.0;  // relative
  double alternating_error = 0.0;
  double exact_fraction = 0.0;  // groups reproduced exactly by alternating
};

PlantedResult fit_planted(const std::vector<float>& w, int64_t n, int64_t k, int64_t g, int q, bool offset) {
  const BcqConfig cfg = BcqConfig{q, g, Orientation::kPerOC, offset};
  const BcqMatrix greedy = quantize_ok(w, n, k, Method::kGreedy, cfg);
  const BcqMatrix alt = quantize_ok(w, n, k, Method::kAlternating, cfg);
  PlantedResult res;
  res.greedy_error = rel_error(w, format::dequantize(greedy));
  res.alternating_error = rel_error(w, format::dequantize(alt));
  const std::vector<double> errs = set_errors(alt, w);
  res.exact_fraction = static_cast<double>(std::count(errs.begin(), errs.end(), 0.0)) / static_cast<double>(errs.size());
  return res;
}

TEST(QuantExact, RecoversExactBcqGroups) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 32;
  const int64_t k = 256;
  const int64_t g = 64;
  for (bool offset : {false, true}) {
    // q <= 2: any scales are recovered exactly.
    for (int q = 1; q <= 2; ++q) {
      const std::vector<float> w = planted_bcq(n, k, g, q, 0.25, 1.0, offset, rng);
      const PlantedResult res = fit_planted(w, n, k, g, q, offset);
      SCOPED_TRACE("q=" + std::to_string(q) + " offset=" + std::to_string(offset));
      EXPECT_EQ(res.alternating_error, 0.0);
      EXPECT_EQ(res.exact_fraction, 1.0);
    }
    // q = 3 with binary-ordered scales (each below the sum of the ones after it): recovered
    // exactly but for rare local minima (measured: none in 20000 groups without an offset, about
    // 1 in 2000 with one).
    {
      const std::vector<float> w = planted_bcq(n, k, g, 3, 0.3, 0.45, offset, rng);
      const PlantedResult res = fit_planted(w, n, k, g, 3, offset);
      SCOPED_TRACE("q=3 offset=" + std::to_string(offset));
      RecordProperty("planted_q3_rel_error_offset" + std::to_string(offset), std::to_string(res.alternating_error));
      EXPECT_GE(res.exact_fraction, 0.97);
      EXPECT_LT(res.alternating_error, 0.1 * res.greedy_error);
    }
    // q = 4: the alternation stops in a local minimum in roughly 1 group of 6; still far better
    // than greedy (measured: 70-85% of groups exact, error about 1/3 of greedy's).
    {
      const std::vector<float> w = planted_bcq(n, k, g, 4, 0.3, 0.45, offset, rng);
      const PlantedResult res = fit_planted(w, n, k, g, 4, offset);
      SCOPED_TRACE("q=4 offset=" + std::to_string(offset));
      RecordProperty("planted_q4_rel_error_offset" + std::to_string(offset), std::to_string(res.alternating_error));
      EXPECT_GE(res.exact_fraction, 0.5);
      EXPECT_LT(res.alternating_error, 0.6 * res.greedy_error);
    }
  }
}

TEST(QuantAlternating, BeatsRtnOnGaussian) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t n = 64;
  const int64_t k = 512;
  const std::vector<float> w = gaussian(n, k, rng);
  for (int q = 2; q <= 6; ++q) {
    const BcqConfig cfg = BcqConfig{q, 128, Orientation::kPerOC, true};
    const double rtn = rel_error(w, format::dequantize(quantize_ok(w, n, k, Method::kRtn, cfg)));
    const double alt = rel_error(w, format::dequantize(quantize_ok(w, n, k, Method::kAlternating, cfg)));
    SCOPED_TRACE("q=" + std::to_string(q));
    EXPECT_LT(alt, 0.97 * rtn);
  }
}

TEST(QuantFitGroup, MatchesQuantizeAndExposesSigns) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(seed);
  const int64_t k = 128;
  const std::vector<float> w = gaussian(1, k, rng);
  for (Method method : kAllMethods) {
    for (int q : {1, 3, 8}) {
      const BcqMatrix m = quantize_ok(w, 1, k, method, BcqConfig{q, k, Orientation::kPerOC, true});
      float alpha[format::kMaxBits];
      float offset = -1.0f;
      std::vector<uint8_t> signs(static_cast<size_t>(q * k), 7);
      fit_group(w.data(), k, q, method, true, 10, alpha, &offset, signs.data());
      SCOPED_TRACE(std::string(method_name(method)) + " q=" + std::to_string(q));
      EXPECT_EQ(offset, stored_offset(m, 0));
      for (int i = 0; i < q; ++i) {
        EXPECT_EQ(alpha[i], stored_alpha(m, 0, i));
        for (int64_t j = 0; j < k; ++j) {
          ASSERT_EQ(signs[static_cast<size_t>(i * k + j)], m.bit(i, 0, j) ? 1 : 0) << "plane " << i << " j=" << j;
        }
      }
    }
    // Without an offset the fitted offset is 0.
    float alpha[1];
    float offset = -1.0f;
    std::vector<uint8_t> signs(static_cast<size_t>(k));
    fit_group(w.data(), k, 1, method, false, 10, alpha, &offset, signs.data());
    EXPECT_EQ(offset, 0.0f);
  }
}

}  // namespace
}  // namespace lutq::quant
