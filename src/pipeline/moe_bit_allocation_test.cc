// Automatic mixed precision (--target-bpw) on a mixture-of-experts model: every 3-D expert tensor
// is one layer of the allocation with all its experts' parameters, the shared expert's matrices
// are layers of their own, the budget is met, and the file quantize_to_file writes with the
// allocation's overrides stores exactly the allocated bits (every expert of a tensor at its bits).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "lutqfile/lutq_file.h"
#include "pipeline/bit_allocation.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_model.h"
#include "support/tiny_model.h"

namespace lutq::pipeline {
namespace {


LinearSpec spec_at(int q) {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = q;
  qo.cfg.g = 32;
  return LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

std::vector<std::vector<int32_t>> chunks_for(int64_t vocab) {
  std::vector<std::vector<int32_t>> chunks(3);
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int32_t i = 0; i < 40; ++i) chunks[c].push_back(static_cast<int32_t>((5 * i + 11 * c + i * i) % vocab));
  }
  return chunks;
}

TEST(MoeBitAllocation, CountsEveryExpertParameterAndTheFileStoresTheAllocation) {
  const testing::Tiny t = testing::make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  const ModelConfig& c = model.config();
  Result<CalibrationStats> stats = collect_hessians(model, chunks_for(c.n_vocab), {}, pool);
  ASSERT_TRUE(stats.is_ok()) << stats.status().message();
  AllocationOptions ao;
  int64_t calls = 0;
  ao.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++calls);
    EXPECT_EQ(total, c.n_layer * (4 + 3 + 3));  // attention, 3-D expert tensors, shared expert
  };
  Result<BitAllocation> a = allocate_bits(f, spec_at(3), 4.6, {2, 3, 4}, &*stats, pool, ao);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_LE(a->average_bpw, 4.6 + 1e-9);
  EXPECT_GT(a->average_bpw, 4.0);
  std::map<std::string, const BitAllocation::Layer*> by_name;
  int64_t weights = 0;
  for (const BitAllocation::Layer& l : a->layers) {
    by_name[l.name] = &l;
    weights += l.weights;
  }
  ASSERT_EQ(by_name.count("blk.1.ffn_up_exps.weight"), 1u);
  EXPECT_EQ(by_name["blk.1.ffn_up_exps.weight"]->weights, c.n_expert * c.n_ff_exp * c.n_embd);
  ASSERT_EQ(by_name.count("blk.0.ffn_down_shexp.weight"), 1u);
  EXPECT_EQ(by_name["blk.0.ffn_down_shexp.weight"]->weights, c.n_embd * c.n_ff_shexp);
  const int64_t attention = 2 * c.n_embd * c.q_dim() + 2 * c.n_embd * c.kv_dim();
  const int64_t ffn = 3 * (c.n_expert * c.n_ff_exp + c.n_ff_shexp) * c.n_embd;
  EXPECT_EQ(weights, c.n_layer * (attention + ffn)) << "every expert parameter counts";

  LinearSpec allocated = spec_at(3);
  for (LinearOverride& o : a->overrides()) allocated.overrides.push_back(std::move(o));
  StoredHessians src(*stats);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lutq_moe_bpw_" + std::to_string(::getpid()) + ".lutq"))
                               .string();
  Result<QuantizeReport> r = quantize_to_file(f, allocated, path, pool, {}, &src);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->linear_weights, weights);
  EXPECT_NEAR(r->linear_bpw(), a->average_bpw, 1e-6);
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  for (int64_t e = 0; e < c.n_expert; ++e) {
    const std::string name = lutqfile::expert_matrix_name("blk.1.ffn_up_exps.weight", e);
    Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(*lf, name);
    ASSERT_TRUE(entry.is_ok() && entry->has_value()) << name;
    EXPECT_EQ((*entry)->cfg.q, by_name["blk.1.ffn_up_exps.weight"]->bits) << name;
  }
  Result<std::optional<lutqfile::BcqEntry>> shexp = lutqfile::find_bcq(*lf, "blk.0.ffn_down_shexp.weight");
  ASSERT_TRUE(shexp.is_ok() && shexp->has_value());
  EXPECT_EQ((*shexp)->cfg.q, by_name["blk.0.ffn_down_shexp.weight"]->bits);
  std::filesystem::remove(path);
}

// The loss-aware mode swaps every expert of a tensor into the model at each candidate: it runs
// through, meets the budget and keeps the allocation of lowest held-out KL.
TEST(MoeBitAllocation, KlSensitivitySwapsTheExperts) {
  const testing::Tiny t = testing::make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  AllocationOptions ao;
  ao.kl_chunks = {{1, 5, 9, 13, 2, 7, 30, 31}, {1, 3, 3, 40, 8, 11}};
  int64_t measured = 0;
  const int64_t curves = t.spec.n_layer * (4 + 3 + 3);
  ao.kl_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++measured);
    EXPECT_EQ(total, curves * 2 + static_cast<int64_t>(ao.penalties.size()));
  };
  Result<BitAllocation> a = allocate_bits(f, spec_at(3), 4.6, {2, 3, 4}, nullptr, pool, ao);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(measured, curves * 2 + static_cast<int64_t>(ao.penalties.size()));
  EXPECT_LE(a->average_bpw, 4.6 + 1e-9);
  ASSERT_FALSE(a->trials.empty());
  for (const BitAllocation::Trial& tr : a->trials) EXPECT_LE(a->kl, tr.kl) << "penalty " << tr.penalty;
  EXPECT_TRUE(std::isfinite(a->kl));
  EXPECT_GT(a->kl, 0.0);
}

// Model::replace_expert_linear, which the loss-aware mode uses: the expert's layer is swapped,
// a wrong shape or a missing expert is refused by name.
TEST(MoeBitAllocation, ReplaceExpertLinearSwapsOneExpert) {
  const testing::Tiny t = testing::make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(1);
  Model model = testing::load_tiny(f, pool);
  const Linear* before = model.expert_linear(0, LinearRole::kFfnUp, 2);
  ASSERT_NE(before, nullptr);
  std::vector<float> w(static_cast<size_t>(before->n() * before->k()), 0.25f);
  quant::QuantOptions q;
  q.cfg.q = 2;
  q.cfg.g = 32;
  LinearChoice choice;
  choice.quantize = true;
  choice.quant = q;
  choice.isa = kernels::Isa::kScalar;
  Result<Linear> lin = Linear::quantized("x", w.data(), before->n(), before->k(), choice, &pool);
  ASSERT_TRUE(lin.is_ok()) << lin.status().message();
  ASSERT_TRUE(model.replace_expert_linear(0, LinearRole::kFfnUp, 2, std::move(*lin)).is_ok());
  EXPECT_TRUE(model.expert_linear(0, LinearRole::kFfnUp, 2)->is_quantized());
  EXPECT_FALSE(model.expert_linear(0, LinearRole::kFfnUp, 3)->is_quantized());
  Result<Linear> wrong = Linear::quantized("y", w.data(), before->k(), before->n(), choice, &pool);
  ASSERT_TRUE(wrong.is_ok());
  Status s = model.replace_expert_linear(0, LinearRole::kFfnUp, LinearObserver::kSharedExpert, std::move(*wrong));
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("shared expert ffn_up"), std::string::npos) << s.message();
  Result<Linear> any = Linear::quantized("z", w.data(), before->n(), before->k(), choice, &pool);
  ASSERT_TRUE(any.is_ok());
  s = model.replace_expert_linear(0, LinearRole::kFfnUp, 99, std::move(*any));
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("no such layer"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lutq::pipeline
