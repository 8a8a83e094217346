// BcqLinear::forward_shared: several layers reading one input (q/k/v, gate/up) give exactly what
// forward() gives each, on every backend this CPU runs, whether they share one table build and
// tile queue (same k and group, per-OC) or fall back to one call each; and the shared call costs
// the pool at most two round trips per 32 activation rows, not two per layer.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "format/scale_codes.h"
#include "kernels/linear.h"
#include "support/random_bcq.h"

namespace lutq::kernels {
namespace {

using format::BcqConfig;
using format::BcqMatrix;
using format::Orientation;

struct Case {
  std::string name;
  std::vector<std::pair<int64_t, BcqConfig>> layers;  // n, configuration; all k = kK
  std::vector<int> scale_bits;                        // per layer, 0: fp16 scales
  bool shares = true;                                 // expected to take the shared path
};

constexpr int64_t kK = 256;

std::vector<Case> cases() {
  const BcqConfig q4{4, 64, Orientation::kPerOC, false};
  const BcqConfig q3o{3, 64, Orientation::kPerOC, true};
  const BcqConfig q2{2, 64, Orientation::kPerOC, false};
  return {
      {"qkv, mixed q, offsets and codes", {{96, q4}, {40, q3o}, {40, q2}}, {0, 8, 0}, true},
      {"gate/up, ragged rows", {{70, q4}, {70, q4}}, {6, 6}, true},
      {"one group per row", {{64, {3, kK, Orientation::kPerOC, true}}, {33, {3, kK, Orientation::kPerOC, false}}},
       {0, 0}, true},
      {"different groups: one call each", {{64, q4}, {64, {4, 128, Orientation::kPerOC, false}}}, {0, 0}, false},
      {"per-IC: one call each", {{64, q4}, {64, {4, 32, Orientation::kPerIC, false}}}, {0, 0}, false},
  };
}

BcqMatrix make_layer(int64_t n, const BcqConfig& cfg, int bits, std::mt19937_64& rng) {
  BcqMatrix w = testing::random_bcq(n, kK, cfg, rng);
  if (bits == 0) return w;
  Result<BcqMatrix> coded = format::encode_scales(w, bits);
  EXPECT_TRUE(coded.is_ok()) << coded.status().message();
  return coded.is_ok() ? std::move(coded).value() : w;
}

TEST(SharedGemm, EqualsOneCallPerLayerOnEveryBackend) {
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (Isa isa : available_isas(detect_cpu())) {
    if (isa == Isa::kCuda) continue;
    for (Precision p : {Precision::kExact, Precision::kFast}) {
      for (const Case& c : cases()) {
        std::vector<BcqLinear> lins;
        for (size_t j = 0; j < c.layers.size(); ++j) {
          BcqMatrix w = make_layer(c.layers[j].first, c.layers[j].second, c.scale_bits[j], rng);
          Result<BcqLinear> l = BcqLinear::create(w, isa, p, GemmPath::kLut);
          ASSERT_TRUE(l.is_ok()) << l.status().message();
          lins.push_back(std::move(*l));
        }
        std::vector<const BcqLinear*> ptrs;
        for (const BcqLinear& l : lins) ptrs.push_back(&l);
        for (int64_t m : {1, 2, 3, 8, 33, 70}) {
          SCOPED_TRACE(c.name + " isa " + std::string(isa_name(isa)) + " " + precision_name(p) + " m=" +
                       std::to_string(m) + " seed=" + std::to_string(seed) + " (LUTQ_TEST_SEED reproduces)");
          const std::vector<float> x = testing::random_activations(m, kK, rng);
          std::vector<std::vector<float>> want(lins.size()), got(lins.size());
          std::vector<float*> outs;
          for (size_t j = 0; j < lins.size(); ++j) {
            want[j].assign(static_cast<size_t>(m * lins[j].n()), 0.0f);
            got[j].assign(want[j].size(), -1.0f);
            ASSERT_TRUE(lins[j].forward(x.data(), m, want[j].data(), pool).is_ok());
            outs.push_back(got[j].data());
          }
          const uint64_t before = pool.round_trips();
          ASSERT_TRUE(BcqLinear::forward_shared(ptrs, x.data(), m, outs, pool).is_ok());
          const uint64_t trips = pool.round_trips() - before;
          const bool simd = isa == Isa::kAvx2 || isa == Isa::kAvx512;
          if (simd && c.shares) {
            const uint64_t chunks = static_cast<uint64_t>((m + kMaxM - 1) / kMaxM);
            EXPECT_GE(trips, chunks);  // the tiles; the table build too unless it is small
            EXPECT_LE(trips, 2 * chunks);
          }
          for (size_t j = 0; j < lins.size(); ++j) {
            for (size_t e = 0; e < want[j].size(); ++e) {
              // Bit for bit (memcmp: -0.0 and NaN patterns included).
              ASSERT_EQ(std::memcmp(&got[j][e], &want[j][e], sizeof(float)), 0)
                  << "layer " << j << " element " << e << ": " << got[j][e] << " vs " << want[j][e];
            }
          }
        }
      }
    }
  }
}

TEST(SharedGemm, RefusesMismatchedOutputs) {
  std::mt19937_64 rng(7);
  ThreadPool pool(1);
  Result<BcqLinear> l = BcqLinear::create(testing::random_bcq(32, kK, {2, 64, Orientation::kPerOC, false}, rng),
                                          Isa::kScalar, Precision::kExact, GemmPath::kLut);
  ASSERT_TRUE(l.is_ok());
  const BcqLinear* lins[] = {&*l, &*l};
  std::vector<float> x(kK, 1.0f), y(32);
  float* one[] = {y.data()};
  EXPECT_FALSE(BcqLinear::forward_shared(lins, x.data(), 1, one, pool).is_ok());
}

}  // namespace
}  // namespace lutq::kernels
