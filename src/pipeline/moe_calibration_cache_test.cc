// Whole-model statistics of a mixture-of-experts model (collect_hessians, the calibration cache;
// docs/moe.md, "Calibrated experts"): every block keeps its routed and shared experts'
// statistics, equal bit for bit to what LayerwiseCalibration collects; the cache saves and
// reloads them exactly; and a model quantized from the reloaded cache is the file quantized block
// by block, byte for byte.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_model.h"
#include "support/tiny_model.h"

namespace lutq::pipeline {
namespace {


std::vector<std::vector<int32_t>> chunks_for(int64_t vocab) {
  std::vector<std::vector<int32_t>> chunks(3);
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int32_t i = 0; i < 40; ++i) chunks[c].push_back(static_cast<int32_t>((5 * i + 11 * c + i * i) % vocab));
  }
  return chunks;
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() / ("lutq_moecache_" + tag + "_" + std::to_string(::getpid())))
      .string();
}

std::vector<double> copy_h(const ExpertHessian& h, int64_t k) { return std::vector<double>(h.h, h.h + k * k); }

// Every expert's statistics (routed and shared, each input) of `a` equal `b`'s bit for bit.
template <typename A, typename B>
void expect_same_experts(A& a, B& b, const ModelConfig& c) {
  for (int64_t l = 0; l < c.n_layer; ++l) {
    for (int64_t x = -1; x < c.n_expert; ++x) {
      const int64_t expert = x < 0 ? LinearObserver::kSharedExpert : x;
      for (LinearRole role : {LinearRole::kFfnGate, LinearRole::kFfnDown}) {
        const int64_t k = role == LinearRole::kFfnGate ? c.n_embd : (x < 0 ? c.n_ff_shexp : c.n_ff_exp);
        Result<ExpertHessian> ha = a.expert_hessian(l, role, expert);
        Result<ExpertHessian> hb = b.expert_hessian(l, role, expert);
        ASSERT_TRUE(ha.is_ok() && hb.is_ok()) << ha.status().message() << " / " << hb.status().message();
        EXPECT_EQ(ha->rows, hb->rows) << l << "/" << x;
        EXPECT_EQ(copy_h(*ha, k), copy_h(*hb, k)) << "block " << l << " expert " << x << " " << role_name(role);
      }
    }
  }
}

TEST(MoeCalibrationCache, WholeModelExpertStatisticsEqualLayerwiseAndRoundTrip) {
  const testing::Tiny t = testing::make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  const ModelConfig& c = model.config();
  const std::vector<std::vector<int32_t>> chunks = chunks_for(c.n_vocab);
  Result<CalibrationStats> stats = collect_hessians(model, chunks, {}, pool);
  ASSERT_TRUE(stats.is_ok()) << stats.status().message();
  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  expect_same_experts(*stats, *lw, c);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    EXPECT_TRUE(stats->moe_block(l));
    EXPECT_EQ(stats->expert_hessian(l, LinearRole::kFfnUp, LinearObserver::kSharedExpert)->rows, 3 * 40);
  }
  StoredHessians stored(*stats);
  EXPECT_TRUE(stored.hessian(1, LinearRole::kAttnOutput).is_ok());
  EXPECT_FALSE(stored.hessian(1, LinearRole::kFfnDown).is_ok()) << "an MoE block's FFN statistics are per expert";
  EXPECT_FALSE(stored.expert_hessian(1, LinearRole::kFfnDown, c.n_expert).is_ok());

  const std::string path = temp_path("roundtrip");
  const uint64_t fp = calibration_fingerprint(f, chunks);
  ASSERT_TRUE(save_calibration(*stats, fp, path).is_ok());
  Result<CalibrationStats> back = load_calibration(path, fp, c);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  expect_same_experts(*back, *stats, c);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    EXPECT_EQ(back->hessian(l, LinearRole::kAttnQ).h(), stats->hessian(l, LinearRole::kAttnQ).h());
  }
  // A configuration with other experts (no shared expert here) does not match the cache.
  ModelConfig other = c;
  other.n_ff_shexp = 0;
  Result<CalibrationStats> refused = load_calibration(path, fp, other);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("calib.0.expert_rows"), std::string::npos) << refused.status().message();
  std::filesystem::remove(path);
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// GPTQ-BCQ of every layer (attention, routed experts, shared expert) from the reloaded cache
// writes the same file as block-by-block calibration.
TEST(MoeCalibrationCache, QuantizingFromTheCacheEqualsLayerByLayer) {
  const testing::Tiny t = testing::make_tiny(testing::tiny_qwen2moe_spec_g32());
  const io::GgufFile f = testing::open_tiny(t);
  ThreadPool pool(2);
  const Model model = testing::load_tiny(f, pool);
  const std::vector<std::vector<int32_t>> chunks = chunks_for(model.config().n_vocab);
  LinearSpec spec;
  Result<LinearOverride> o = model::parse_override("blk.*=q=3,g=32,method=gptq-bcq");
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  spec.overrides.push_back(*o);
  const std::string cache = temp_path("cache");
  const uint64_t fp = calibration_fingerprint(f, chunks);
  {
    Result<CalibrationStats> stats = collect_hessians(model, chunks, {}, pool);
    ASSERT_TRUE(stats.is_ok()) << stats.status().message();
    ASSERT_TRUE(save_calibration(*stats, fp, cache).is_ok());
  }
  Result<CalibrationStats> cached = load_calibration(cache, fp, model.config());
  ASSERT_TRUE(cached.is_ok()) << cached.status().message();
  StoredHessians stored(*cached);
  const std::string from_cache = temp_path("from_cache.lutq");
  Result<QuantizeReport> a = quantize_to_file(f, spec, from_cache, pool, {}, &stored);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(a->experts, 3 * t.spec.n_layer * t.spec.n_expert);

  Result<LayerwiseCalibration> lw = LayerwiseCalibration::create(model, chunks, pool);
  ASSERT_TRUE(lw.is_ok()) << lw.status().message();
  const std::string layerwise = temp_path("layerwise.lutq");
  Result<QuantizeReport> b = quantize_to_file(f, spec, layerwise, pool, {}, &*lw);
  ASSERT_TRUE(b.is_ok()) << b.status().message();
  EXPECT_EQ(a->experts_uncalibrated, b->experts_uncalibrated);
  const std::vector<char> bytes = file_bytes(from_cache);
  EXPECT_GT(bytes.size(), 0u);
  EXPECT_TRUE(bytes == file_bytes(layerwise)) << "the files differ";
  for (const std::string& p : {cache, from_cache, layerwise}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace lutq::pipeline
