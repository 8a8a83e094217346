// Automatic mixed precision on a tiny random model: the budget is met, more budget never costs
// error, and infeasible or unsupported requests are clear errors.
#include "pipeline/bit_allocation.h"

#include <gtest/gtest.h>

#include <limits>

#include "io/gguf_file.h"
#include "support/tiny_llama.h"

namespace lutq::pipeline {
namespace {

LinearSpec spec_at(int q) {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = q;
  qo.cfg.g = 32;
  return LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

// Σ over layers of the allocation's bits, as a check of average_bpw.
double weighted_bpw(const BitAllocation& a) {
  double bits = 0.0;
  double weights = 0.0;
  for (const BitAllocation::Layer& l : a.layers) {
    bits += l.bits_per_weight * static_cast<double>(l.weights);
    weights += static_cast<double>(l.weights);
  }
  return bits / weights;
}

TEST(BitAllocation, MeetsTheBudgetAndUsesIt) {
  const testing::Tiny t = testing::make_tiny({});
  Result<io::GgufFile> f = io::GgufFile::from_memory(t.bytes, "tiny.gguf");
  ASSERT_TRUE(f.is_ok());
  ThreadPool pool(2);
  // q=2/3/4 with g=32 and no offset store 3 / 4.5 / 6 bits per weight (fp16 scales: 16·q/32).
  int64_t calls = 0;
  AllocationOptions counting;
  counting.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++calls);
    EXPECT_EQ(total, 2 * kNumLinearRoles);
  };
  Result<BitAllocation> low = allocate_bits(*f, spec_at(3), 3.0, {2, 3, 4}, nullptr, pool, counting);
  ASSERT_TRUE(low.is_ok()) << low.status().message();
  for (const auto& l : low->layers) EXPECT_EQ(l.bits, 2) << l.name;
  EXPECT_NEAR(low->average_bpw, 3.0, 1e-9);

  Result<BitAllocation> mid = allocate_bits(*f, spec_at(3), 4.6, {2, 3, 4}, nullptr, pool);
  ASSERT_TRUE(mid.is_ok()) << mid.status().message();
  EXPECT_LE(mid->average_bpw, 4.6 + 1e-9);
  EXPECT_GT(mid->average_bpw, 4.0);  // the budget is mostly used
  EXPECT_NEAR(mid->average_bpw, weighted_bpw(*mid), 1e-9);
  ASSERT_EQ(mid->overrides().size(), mid->layers.size());
  EXPECT_EQ(mid->overrides()[0].pattern, mid->layers[0].name);

  Result<BitAllocation> high = allocate_bits(*f, spec_at(3), 8.0, {2, 3, 4}, nullptr, pool);
  ASSERT_TRUE(high.is_ok());
  for (const auto& l : high->layers) EXPECT_EQ(l.bits, 4) << l.name;
}

// Loss-aware sensitivity: every layer's curve is measured as the model's KL to the dense model
// (one measurement per non-base candidate), the budget is met, and at the base bits for every
// layer the KL is the same number for all of them.
TEST(BitAllocation, KlSensitivityMeasuresEveryCandidateAndMeetsTheBudget) {
  const testing::Tiny t = testing::make_tiny({});
  Result<io::GgufFile> f = io::GgufFile::from_memory(t.bytes, "tiny.gguf");
  ASSERT_TRUE(f.is_ok());
  ThreadPool pool(2);
  AllocationOptions ao;
  ao.kl_chunks = {{1, 5, 9, 13, 2, 7, 30, 31}, {1, 3, 3, 40, 8, 11}};
  int64_t measured = 0;
  ao.kl_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++measured);
    // 2 blocks x 7 layers x (3 candidates - base), then one whole-model measurement per penalty
    EXPECT_EQ(total, 2 * 2 * kNumLinearRoles + static_cast<int64_t>(ao.penalties.size()));
  };
  Result<BitAllocation> a = allocate_bits(*f, spec_at(3), 4.6, {2, 3, 4}, nullptr, pool, ao);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(measured, 2 * 2 * kNumLinearRoles + static_cast<int64_t>(ao.penalties.size()));
  EXPECT_LE(a->average_bpw, 4.6 + 1e-9);
  // Every penalty's allocation was measured whole; the chosen one has the lowest KL.
  ASSERT_EQ(a->trials.size(), ao.penalties.size());
  for (const BitAllocation::Trial& t : a->trials) {
    EXPECT_LE(a->kl, t.kl) << "penalty " << t.penalty;
    EXPECT_LE(t.average_bpw, 4.6 + 1e-9) << "penalty " << t.penalty;
  }
  EXPECT_GT(a->average_bpw, 4.0);
  EXPECT_NEAR(a->average_bpw, weighted_bpw(*a), 1e-9);
  // All budget: every layer at 4 bits, whatever the measured curves.
  measured = 0;
  Result<BitAllocation> high = allocate_bits(*f, spec_at(3), 8.0, {2, 3, 4}, nullptr, pool, ao);
  ASSERT_TRUE(high.is_ok());
  for (const auto& l : high->layers) EXPECT_EQ(l.bits, 4) << l.name;
  // Allocations compared on held-out chunks: still one measurement per penalty, budget met.
  AllocationOptions held = ao;
  held.kl_progress = {};
  held.selection_chunks = {{1, 12, 6, 33, 20, 4, 9, 2, 17}};
  Result<BitAllocation> h = allocate_bits(*f, spec_at(3), 4.6, {2, 3, 4}, nullptr, pool, held);
  ASSERT_TRUE(h.is_ok()) << h.status().message();
  ASSERT_EQ(h->trials.size(), held.penalties.size());
  for (const BitAllocation::Trial& t : h->trials) EXPECT_LE(h->kl, t.kl) << "penalty " << t.penalty;
  EXPECT_LE(h->average_bpw, 4.6 + 1e-9);
  // Only "no downgrades" at exactly the base bits' size: every layer stays at the base.
  Result<BitAllocation> base_only = allocate_bits(*f, spec_at(3), 4.5, {2, 3, 4}, nullptr, pool, [&] {
    AllocationOptions o = ao;
    o.kl_progress = {};
    o.penalties = {std::numeric_limits<double>::infinity()};
    return o;
  }());
  ASSERT_TRUE(base_only.is_ok()) << base_only.status().message();
  for (const auto& l : base_only->layers) EXPECT_EQ(l.bits, 3) << l.name;
  ASSERT_EQ(base_only->trials.size(), 1u);
  EXPECT_EQ(base_only->kl, base_only->trials[0].kl);
  // A token outside the vocabulary is the forward pass's clear error.
  ao.kl_chunks = {{1, 2, 999}};
  ao.kl_progress = {};
  EXPECT_FALSE(allocate_bits(*f, spec_at(3), 4.6, {2, 3, 4}, nullptr, pool, ao).is_ok());
}

TEST(BitAllocation, RejectsInfeasibleAndUnsupportedRequests) {
  const testing::Tiny t = testing::make_tiny({});
  Result<io::GgufFile> f = io::GgufFile::from_memory(t.bytes, "tiny.gguf");
  ASSERT_TRUE(f.is_ok());
  ThreadPool pool(1);
  Result<BitAllocation> r = allocate_bits(*f, spec_at(3), 2.0, {2, 3}, nullptr, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("below"), std::string::npos) << r.status().message();
  EXPECT_FALSE(allocate_bits(*f, spec_at(3), 3.0, {3, 2}, nullptr, pool).is_ok());
  EXPECT_FALSE(allocate_bits(*f, spec_at(3), 3.0, {}, nullptr, pool).is_ok());
  LinearSpec dense_q = spec_at(3);
  dense_q.overrides.push_back(*model::parse_override("attn_q=dense"));
  Result<BitAllocation> d = allocate_bits(*f, dense_q, 3.0, {2, 3}, nullptr, pool);
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("not a BCQ layer"), std::string::npos) << d.status().message();
}

}  // namespace
}  // namespace lutq::pipeline
