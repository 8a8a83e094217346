// Mixture-of-experts layers on tiny random GGUFs in the layouts llama.cpp writes (Mixtral as
// llama + expert_count, qwen2moe with its gated shared expert, qwen3moe, olmoe): logits against
// the independent double-precision reference (tests/support/reference_forward.h), the grouped
// batch against per-row decode, the routing helpers, quantized experts, the observer, and the
// configuration errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/blocks/moe_ffn.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
#include "support/reference_forward.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

using testing::load_error;
using testing::load_tiny;
using testing::make_tiny;
using testing::open_tiny;
using testing::prefill_all;
using testing::Tiny;
using testing::TinySpec;
using testing::tiny_moe_spec;

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8, 25, 31};

// Worst |runtime − reference| over all logits, relative to max(1, max |reference logit|).
// Bound: as for the dense families (model_reference_test.cc), fp32 sums of <= 48 products per
// dot product round within ~1e-5 of the scale; the routing weights are a softmax of fp32 router
// logits (relative error ~1e-6) and a weighted sum of two experts adds one more such rounding, so
// 2e-4 leaves a wide margin while any wrong expert choice or normalisation moves logits by O(0.1).
double worst_reference_error(const TinySpec& spec, const LoadOptions& opt = {}) {
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model model = load_tiny(f, pool, opt);
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  const std::vector<std::vector<double>> want = testing::reference_logits(t, kTokens);
  double scale = 1.0;
  for (const auto& row : want) {
    for (double v : row) scale = std::max(scale, std::abs(v));
  }
  double worst = 0.0;
  const auto V = static_cast<size_t>(spec.n_vocab);
  for (size_t i = 0; i < want.size() * V; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i / V][i % V]));
  }
  return worst / scale;
}

TEST(MoeForward, MixtralLayoutMatchesDoubleReference) {
  EXPECT_LE(worst_reference_error(tiny_moe_spec("llama")), 2e-4);
}

TEST(MoeForward, Qwen2MoeWithGatedSharedExpertMatchesDoubleReference) {
  EXPECT_LE(worst_reference_error(tiny_moe_spec("qwen2moe")), 2e-4);
}

TEST(MoeForward, Qwen3MoeMatchesDoubleReference) {
  EXPECT_LE(worst_reference_error(tiny_moe_spec("qwen3moe")), 2e-4);
}

TEST(MoeForward, OlmoeWithFullWidthQkNormsMatchesDoubleReference) {
  EXPECT_LE(worst_reference_error(tiny_moe_spec("olmoe")), 2e-4);
}

TEST(MoeForward, ExpertWeightsNormKeyOverridesTheFamilyDefault) {
  TinySpec spec = tiny_moe_spec("qwen2moe");
  spec.weights_norm_key = 1;
  EXPECT_LE(worst_reference_error(spec), 2e-4);
  spec = tiny_moe_spec("llama");
  spec.weights_norm_key = 0;
  spec.n_expert_used = 3;
  EXPECT_LE(worst_reference_error(spec), 2e-4);
}

TEST(MoeForward, AllExpertsAndOneExpertPerToken) {
  TinySpec spec = tiny_moe_spec("qwen3moe");
  spec.n_expert_used = spec.n_expert;
  EXPECT_LE(worst_reference_error(spec), 2e-4);
  spec.n_expert_used = 1;
  EXPECT_LE(worst_reference_error(spec), 2e-4);
}

// The grouped execution of a batch (rows of several sequences, each expert run once on the rows
// routed to it) against one row per call, where each expert sees a single token.
TEST(MoeForward, GroupedBatchOfSequencesEqualsPerTokenDecode) {
  for (const char* arch : {"llama", "qwen2moe"}) {
    const Tiny t = make_tiny(tiny_moe_spec(arch));
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(2);
    const Model model = load_tiny(f, pool);
    const auto V = static_cast<size_t>(model.config().n_vocab);
    const int32_t S = 3;
    std::unique_ptr<Memory> batched = std::move(*model.make_memory(32, S));
    std::unique_ptr<Memory> single = std::move(*model.make_memory(32, S));
    Batch batch;  // 4 prefill rows per sequence, interleaved
    for (int64_t pos = 0; pos < 4; ++pos) {
      for (int32_t s = 0; s < S; ++s) batch.add(static_cast<int32_t>((pos * 13 + s * 7 + 1) % 50), pos, s, true);
    }
    std::vector<float> got(batch.rows.size() * V);
    ASSERT_TRUE(model.forward(batch, *batched, got.data(), pool).is_ok());
    float worst = 0.0f;
    for (size_t r = 0; r < batch.rows.size(); ++r) {
      Batch one;
      one.rows.push_back(batch.rows[r]);
      std::vector<float> want(V);
      ASSERT_TRUE(model.forward(one, *single, want.data(), pool).is_ok());
      for (size_t v = 0; v < V; ++v) {
        worst = std::max(worst, std::abs(got[r * V + v] - want[v]) / std::max(1.0f, std::abs(want[v])));
      }
    }
    EXPECT_LT(worst, 1e-4f) << arch;
  }
}

TEST(MoeRouting, TopKSoftmaxAndRenormalisation) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, 2.0f,   // tie between experts 1 and 3
                                     -1.0f, 0.5f, 3.0f, NAN};  // NaN never chosen
  const Routing plain = route_rows(logits.data(), 2, 4, 2, ExpertWeights::kProbabilities);
  ASSERT_EQ(plain.expert, (std::vector<int32_t>{1, 3, 2, 1}));
  const double z0 = 1.0 + 2.0 * std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(plain.weight[0], std::exp(2.0) / z0, 1e-6);
  EXPECT_NEAR(plain.weight[1], std::exp(2.0) / z0, 1e-6);
  const Routing norm = route_rows(logits.data(), 2, 4, 2, ExpertWeights::kRenormalised);
  EXPECT_NEAR(norm.weight[0], 0.5, 1e-6);
  EXPECT_NEAR(norm.weight[2] + norm.weight[3], 1.0, 1e-6);
  EXPECT_NEAR(norm.weight[2], 1.0 / (1.0 + std::exp(-2.5)), 1e-6);

  const Routing unit = route_rows(logits.data(), 2, 4, 2, ExpertWeights::kUnit);
  EXPECT_EQ(unit.expert, plain.expert);
  EXPECT_EQ(unit.weight, (std::vector<float>{1.0f, 1.0f, 1.0f, 1.0f}));

  const ExpertGroups g = group_by_expert(plain, 2, 4);
  EXPECT_EQ(g.offset, (std::vector<int64_t>{0, 0, 2, 3, 4}));
  EXPECT_EQ(g.row, (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_FLOAT_EQ(g.weight[1], plain.weight[3]);
}

// Counts the rows each expert's gate sees; checks every expert input has n_embd features.
class ExpertCounter final : public LinearObserver {
 public:
  Status observe(int64_t, LinearRole role, const float*, int64_t, int64_t) override {
    ++dense[role];
    return Status::ok();
  }
  Status observe_expert(int64_t layer, LinearRole role, int64_t expert, const float*, int64_t m, int64_t) override {
    if (role == LinearRole::kFfnGate && layer == 0) rows[expert] += m;
    return Status::ok();
  }
  std::map<LinearRole, int> dense;
  std::map<int64_t, int64_t> rows;
};

TEST(MoeForward, ObserverSeesEachExpertsRoutedRows) {
  const TinySpec spec = tiny_moe_spec("qwen2moe");
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const Model model = load_tiny(f, pool);
  std::unique_ptr<Memory> memory = std::move(*model.make_memory(32));
  ExpertCounter counter;
  std::vector<float> logits(static_cast<size_t>(spec.n_vocab));
  ASSERT_TRUE(model.forward(kTokens, 0, *memory, logits.data(), pool, LogitsMode::kLast, &counter).is_ok());
  const auto m = static_cast<int64_t>(kTokens.size());
  int64_t routed = 0;
  for (const auto& [expert, n] : counter.rows) routed += expert >= 0 ? n : 0;
  EXPECT_EQ(routed, m * spec.n_expert_used);
  EXPECT_EQ(counter.rows[LinearObserver::kSharedExpert], m);
  EXPECT_EQ(counter.dense.count(LinearRole::kFfnGate), 0u);  // no dense FFN in an MoE layer
  EXPECT_EQ(counter.dense[LinearRole::kAttnQ], 2);           // attention still observed, once per layer
  EXPECT_NE(model.describe().find("ffn_gate_shexp: dense"), std::string::npos) << model.describe();
  EXPECT_NE(model.expert_linear(1, LinearRole::kFfnUp, LinearObserver::kSharedExpert), nullptr);
  EXPECT_EQ(model.expert_linear(1, LinearRole::kFfnUp, 6), nullptr);
  EXPECT_EQ(model.linear(1, LinearRole::kFfnUp), nullptr);
}

TEST(MoeForward, ExpertsQuantizedAtLoadStayCloseToDense) {
  TinySpec spec = tiny_moe_spec("llama");
  spec.n_ff = 64;  // expert width divisible by the group size
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  LoadOptions opt;
  quant::QuantOptions q;
  q.cfg.q = 8;  // fine enough that the routing does not change
  q.cfg.g = 32;
  opt.linear = LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kFast);
  const Model model = load_tiny(f, pool, opt);
  const Linear* ex = model.expert_linear(0, LinearRole::kFfnDown, 5);
  ASSERT_NE(ex, nullptr);
  EXPECT_TRUE(ex->is_quantized());
  EXPECT_EQ(ex->n(), spec.n_embd);
  EXPECT_EQ(ex->k(), spec.n_ff);
  const std::string d = model.describe();
  EXPECT_NE(d.find("ffn_down_exps: bcq"), std::string::npos) << d;
  EXPECT_NE(d.find("x12"), std::string::npos) << d;  // 6 experts x 2 layers of each role
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  const std::vector<std::vector<double>> want = testing::reference_logits(t, kTokens);
  double err = 0.0, norm = 0.0;
  const auto V = static_cast<size_t>(spec.n_vocab);
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = got[i] - want[i / V][i % V];
    err += d * d;
    norm += want[i / V][i % V] * want[i / V][i % V];
  }
  EXPECT_LT(std::sqrt(err / norm), 0.05) << "8-bit experts (and attention) should stay near the fp32 logits";
}

TEST(MoeForward, AGlobOverrideQuantizesOnlyTheExperts) {
  TinySpec spec = tiny_moe_spec("qwen2moe");
  spec.n_ff_exp = 32;
  spec.n_ff_shexp = 32;
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  LoadOptions opt;
  Result<LinearOverride> o = parse_override("blk.*.ffn_*_exps=q=8,g=32");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  opt.linear.overrides.push_back(*o);
  const Model model = load_tiny(f, pool, opt);
  EXPECT_TRUE(model.expert_linear(1, LinearRole::kFfnDown, 3)->is_quantized());
  EXPECT_FALSE(model.expert_linear(1, LinearRole::kFfnDown, LinearObserver::kSharedExpert)->is_quantized());
  EXPECT_FALSE(model.linear(1, LinearRole::kAttnQ)->is_quantized());
}

// The load line's figures (Model::block_linear_stats) over a dense qwen2moe with biased
// attention and a shared expert: every block matrix counted once (attention, each routed expert
// of the 3-D tensors, the shared expert; not the router, the shared expert's gate vector or the
// biases), so the parameters are those of the file's block weight tensors and fp32 gives 32 bpw.
TEST(MoeForward, BlockLinearStatsCountEveryExpertOnce) {
  const TinySpec spec = tiny_moe_spec("qwen2moe");
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const Model model = load_tiny(f, pool);
  const std::regex block_weight(R"(blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down)(_exps|_shexp)?)\.weight)");
  int64_t params = 0;
  for (const io::TensorInfo& ti : f.tensors()) {
    if (std::regex_match(ti.name, block_weight)) params += ti.num_elements();
  }
  const LinearStats stats = model.block_linear_stats();
  EXPECT_EQ(stats.linears, spec.n_layer * 4);
  EXPECT_EQ(stats.quantized, 0);
  EXPECT_EQ(stats.expert_matrices, spec.n_layer * 3 * (spec.n_expert + 1));
  EXPECT_EQ(stats.experts_quantized, 0);
  EXPECT_EQ(stats.params, params);
  EXPECT_EQ(stats.bytes, 4 * params);
  EXPECT_DOUBLE_EQ(stats.bpw(), 32.0);
}

// `lutq quantize` on an MoE model: the dense roles (attention), every routed expert (one entry
// per expert, moe_lutq_test.cc) and the shared expert (moe_shexp_test.cc) go to BCQ, the router
// and the shared expert's gate vector are copied as they are, and the file loads and runs.
TEST(MoeForward, LutqFileOfAnMoeModelQuantizesItsExperts) {
  TinySpec spec = tiny_moe_spec("qwen2moe");
  spec.n_ff_exp = 32;  // the experts' k a multiple of g = 32 (LinearSpec::quantized does not adapt groups)
  spec.n_ff_shexp = 32;
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  quant::QuantOptions q;
  q.cfg.q = 8;
  q.cfg.g = 32;
  const LinearSpec qspec = LinearSpec::quantized(q, kernels::Isa::kScalar, kernels::Precision::kExact);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("lutq_moe_" + std::to_string(::getpid()) + ".lutq")).string();
  Result<pipeline::QuantizeReport> report = pipeline::quantize_to_file(f, qspec, path, pool);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  const Model model = load_tiny(*lf, pool);
  EXPECT_TRUE(model.linear(0, LinearRole::kAttnQ)->is_quantized());
  EXPECT_TRUE(model.expert_linear(0, LinearRole::kFfnGate, 0)->is_quantized());
  EXPECT_TRUE(model.expert_linear(0, LinearRole::kFfnGate, LinearObserver::kSharedExpert)->is_quantized());
  EXPECT_NE(lf->find_tensor("blk.0.ffn_gate_inp_shexp.weight"), nullptr);
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  const std::vector<std::vector<double>> want = testing::reference_logits(t, kTokens);
  const auto V = static_cast<size_t>(spec.n_vocab);
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    err += (got[i] - want[i / V][i % V]) * (got[i] - want[i / V][i % V]);
    norm += want[i / V][i % V] * want[i / V][i % V];
  }
  EXPECT_LT(std::sqrt(err / norm), 0.05);
  std::filesystem::remove(path);
}

TEST(MoeConfig, ErrorsNameTheKeyOrTensor) {
  TinySpec spec = tiny_moe_spec("qwen2moe");
  spec.drop_tensor = "blk.1.ffn_up_exps.weight";
  EXPECT_NE(load_error(spec).find("missing tensor 'blk.1.ffn_up_exps.weight'"), std::string::npos) << load_error(spec);

  spec = tiny_moe_spec("llama");
  spec.n_expert_used = 7;
  std::string e = load_error(spec);
  EXPECT_NE(e.find("llama.expert_used_count = 7 must be in 1..6"), std::string::npos) << e;

  spec = tiny_moe_spec("olmoe");
  spec.misshape_tensor = "blk.0.ffn_down_exps.weight";
  e = load_error(spec);
  EXPECT_NE(e.find("tensor 'blk.0.ffn_down_exps.weight' has shape"), std::string::npos) << e;

  spec = tiny_moe_spec("qwen3moe");
  spec.misshape_tensor = "blk.1.ffn_gate_inp.weight";
  e = load_error(spec);
  EXPECT_NE(e.find("tensor 'blk.1.ffn_gate_inp.weight' has shape"), std::string::npos) << e;

  spec = tiny_moe_spec("qwen2moe");
  spec.drop_tensor = "blk.0.ffn_gate_inp_shexp.weight";
  e = load_error(spec);
  EXPECT_NE(e.find("missing tensor 'blk.0.ffn_gate_inp_shexp.weight'"), std::string::npos) << e;
}

TEST(MoeConfig, MissingExpertCountIsAnErrorForMoeFamilies) {
  // A qwen3moe file without expert_count: written with n_expert = 0 (dense FFN tensors).
  TinySpec spec = tiny_moe_spec("qwen3moe");
  spec.n_expert = 0;
  const std::string e = load_error(spec);
  EXPECT_NE(e.find("missing metadata qwen3moe.expert_count"), std::string::npos) << e;
}

TEST(MoeConfig, ConfigReadsTheExpertKeys) {
  const Tiny t = make_tiny(tiny_moe_spec("qwen2moe"));
  const io::GgufFile f = open_tiny(t);
  Result<ModelConfig> c = ModelConfig::from_checkpoint(f);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->n_expert, 6);
  EXPECT_EQ(c->n_expert_used, 2);
  EXPECT_EQ(c->n_ff_exp, 24);
  EXPECT_EQ(c->n_ff_shexp, 40);
  EXPECT_TRUE(c->shexp_gate);
  EXPECT_FALSE(c->expert_weights_norm);
  EXPECT_NE(c->summary().find("experts 2/6"), std::string::npos) << c->summary();
}

}  // namespace
}  // namespace lutq::model
