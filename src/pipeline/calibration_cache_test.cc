// The calibration cache on a tiny random model: a saved and reloaded CalibrationStats equals the
// collected one bit for bit; another model or other tokens give another fingerprint; a damaged,
// truncated or mismatched cache is refused with a reason, never used.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "pipeline/calibration.h"
#include "support/tiny_llama.h"

namespace lutq::pipeline {
namespace {

struct CacheFixture {
  ThreadPool pool{2};
  testing::Tiny tiny = testing::make_tiny({});
  io::GgufFile gguf = std::move(*io::GgufFile::from_memory(tiny.bytes, "tiny.gguf"));
  Model model = std::move(*Model::load(gguf, LoadOptions{}, pool));
  std::vector<std::vector<int32_t>> chunks = {{1, 5, 9, 13, 2, 7}, {1, 3, 3, 40, 8}};
  std::string path = (std::filesystem::temp_directory_path() /
                      ("lutq_calib_cache_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                       "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                         .string();
  ~CacheFixture() { std::filesystem::remove(path); }

  CalibrationStats collect() {
    Result<CalibrationStats> s = collect_hessians(model, chunks, {}, pool);
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    return std::move(*s);
  }
};

TEST(CalibrationCache, RoundTripIsBitExact) {
  CacheFixture f;
  const CalibrationStats stats = f.collect();
  const uint64_t fp = calibration_fingerprint(f.gguf, f.chunks);
  ASSERT_TRUE(save_calibration(stats, fp, f.path).is_ok());
  EXPECT_FALSE(std::filesystem::exists(f.path + ".partial"));
  Result<CalibrationStats> back = load_calibration(f.path, fp, f.model.config());
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->tokens(), stats.tokens());
  ASSERT_EQ(back->n_layer(), stats.n_layer());
  for (int64_t l = 0; l < stats.n_layer(); ++l) {
    for (LinearRole role : {LinearRole::kAttnQ, LinearRole::kAttnOutput, LinearRole::kFfnGate, LinearRole::kFfnDown}) {
      EXPECT_EQ(back->hessian(l, role).h(), stats.hessian(l, role).h()) << "block " << l << " " << role_name(role);
      EXPECT_EQ(back->hessian(l, role).rows(), stats.hessian(l, role).rows());
    }
  }
}

TEST(CalibrationCache, FingerprintFollowsModelAndTokens) {
  CacheFixture f;
  const uint64_t fp = calibration_fingerprint(f.gguf, f.chunks);
  EXPECT_EQ(fp, calibration_fingerprint(f.gguf, f.chunks));
  std::vector<std::vector<int32_t>> other = f.chunks;
  other[1][2] = 4;
  EXPECT_NE(fp, calibration_fingerprint(f.gguf, other));
  testing::TinySpec spec;
  spec.seed = 8;  // same shapes, other weights
  const testing::Tiny tiny2 = testing::make_tiny(spec);
  Result<io::GgufFile> g2 = io::GgufFile::from_memory(tiny2.bytes, "tiny2.gguf");
  ASSERT_TRUE(g2.is_ok());
  EXPECT_NE(fp, calibration_fingerprint(*g2, f.chunks));

  ASSERT_TRUE(save_calibration(f.collect(), fp, f.path).is_ok());
  Result<CalibrationStats> stale = load_calibration(f.path, fp + 1, f.model.config());
  ASSERT_FALSE(stale.is_ok());
  EXPECT_NE(stale.status().message().find("another model"), std::string::npos) << stale.status().message();
  ModelConfig wider = f.model.config();
  wider.n_layer += 1;
  EXPECT_FALSE(load_calibration(f.path, fp, wider).is_ok());
}

TEST(CalibrationCache, DamagedFilesAreRefused) {
  CacheFixture f;
  const uint64_t fp = calibration_fingerprint(f.gguf, f.chunks);
  ASSERT_TRUE(save_calibration(f.collect(), fp, f.path).is_ok());
  std::ifstream in(f.path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  auto write = [&](const std::vector<char>& b) {
    std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  // Truncated anywhere in the header and at the end of the data.
  for (size_t cut : {size_t{0}, size_t{10}, size_t{200}, bytes.size() - 8}) {
    write(std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_FALSE(load_calibration(f.path, fp, f.model.config()).is_ok()) << "cut at " << cut;
  }
  // A NaN in the last tensor's last sum (the data section ends the file).
  std::vector<char> nan = bytes;
  const double bad = std::nan("");
  std::memcpy(nan.data() + nan.size() - sizeof(double), &bad, sizeof(double));
  write(nan);
  Result<CalibrationStats> r = load_calibration(f.path, fp, f.model.config());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("not finite"), std::string::npos) << r.status().message();
  // A GGUF that is not a calibration cache.
  write(std::vector<char>(f.tiny.bytes.begin(), f.tiny.bytes.end()));
  r = load_calibration(f.path, fp, f.model.config());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("not a lutq calibration cache"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace lutq::pipeline
