// Scale adapters: a round trip through a file, application to the codes they were made for, and
// clear refusals of other codes, shapes and configurations, of model files given as adapters, and
// of damaged files (missing or malformed keys, newer versions, non-finite scales, truncation).
#include "lutqfile/adapter.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "io/gguf_writer.h"
#include "lutqfile/lutq_file.h"
#include "support/random_bcq.h"

namespace lutq::lutqfile {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_adapter_" + std::to_string(::getpid()) + "_" + name)).string();
}

struct Files {
  std::vector<std::string> paths;
  ~Files() {
    for (const std::string& p : paths) std::filesystem::remove(p);
  }
  std::string add(const std::string& name) { return paths.emplace_back(temp_path(name)); }
};

std::string write_image(Files& files, const std::string& name, const io::GgufWriter& w) {
  const std::string path = files.add(name);
  EXPECT_TRUE(w.write_file(path).is_ok());
  return path;
}

// The base matrix with every scale replaced (what tune produces).
format::BcqMatrix retuned(const format::BcqMatrix& base, std::mt19937_64& rng) {
  format::BcqMatrix w = base;
  std::mt19937_64 other(rng());
  const format::BcqMatrix donor = testing::random_bcq(base.n, base.k, base.cfg, other);
  w.alpha = donor.alpha;
  w.offset = donor.offset;
  return w;
}

TEST(Adapter, RoundTripAppliesToItsCodesOnly) {
  std::mt19937_64 rng(testing::test_seed());
  const format::BcqConfig oc{3, 32, format::Orientation::kPerOC, true};
  const format::BcqConfig ic{2, 32, format::Orientation::kPerIC, false};
  const format::BcqMatrix a = testing::random_bcq(64, 96, oc, rng), b = testing::random_bcq(32, 64, ic, rng);
  const format::BcqMatrix ta = retuned(a, rng), tb = retuned(b, rng);
  Files files;
  const std::string path = files.add("a.gguf");
  ASSERT_TRUE(write_adapter(path, "base.lutq", "desc", {{"blk.0.attn_q.weight", &ta}, {"blk.0.ffn_up.weight", &tb}}).is_ok());
  Result<std::shared_ptr<const Adapter>> ad = Adapter::read(path);
  ASSERT_TRUE(ad.is_ok()) << ad.status().message();
  EXPECT_EQ((*ad)->size(), 2u);
  EXPECT_EQ((*ad)->base(), "base.lutq");
  EXPECT_EQ((*ad)->description(), "desc");
  EXPECT_EQ((*ad)->scale_bytes(), int64_t((ta.alpha.size() + ta.offset.size() + tb.alpha.size()) * 2));
  format::BcqMatrix w = a;
  ASSERT_TRUE(*(*ad)->apply("blk.0.attn_q.weight", w));
  testing::expect_same_bcq(w, ta);
  w = b;
  ASSERT_TRUE(*(*ad)->apply("blk.0.ffn_up.weight", w));
  testing::expect_same_bcq(w, tb);
  EXPECT_FALSE(*(*ad)->apply("blk.1.attn_q.weight", w));  // not in the adapter: untouched
  testing::expect_same_bcq(w, tb);
  // One flipped code bit, another shape, another configuration: refused with the name.
  w = a;
  w.bits[5] ^= 0x10;
  Result<bool> r = (*ad)->apply("blk.0.attn_q.weight", w);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_NE(r.status().message().find("codes differ"), std::string::npos) << r.status().message();
  format::BcqMatrix shape = testing::random_bcq(64, 64, oc, rng);
  EXPECT_FALSE((*ad)->apply("blk.0.attn_q.weight", shape).is_ok());
  format::BcqMatrix cfg = testing::random_bcq(64, 96, {3, 32, format::Orientation::kPerOC, false}, rng);
  r = (*ad)->apply("blk.0.attn_q.weight", cfg);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("another model"), std::string::npos) << r.status().message();
}

TEST(Adapter, DamagedFilesAreRefusedClearly) {
  std::mt19937_64 rng(testing::test_seed());
  const format::BcqMatrix a = testing::random_bcq(16, 64, {2, 32, format::Orientation::kPerOC, true}, rng);
  Files files;
  const auto expect_refused = [&](const std::string& path, const std::string& part) {
    Result<std::shared_ptr<const Adapter>> ad = Adapter::read(path);
    ASSERT_FALSE(ad.is_ok()) << path;
    EXPECT_NE(ad.status().message().find(part), std::string::npos) << ad.status().message();
  };
  const auto base = [&](bool version, bool codes) {
    io::GgufWriter w;
    if (version) {
      EXPECT_TRUE(w.add_uint32(std::string(kAdapterVersionKey), kAdapterFormatVersion).is_ok());
    }
    EXPECT_TRUE(add_scales(w, "m", a).is_ok());
    if (codes) {
      EXPECT_TRUE(w.add_string("lutq.adapter.m.codes", "0123456789abcdef").is_ok());
    }
    return w;
  };
  expect_refused(files.add("missing.gguf"), "");
  io::GgufWriter model;
  ASSERT_TRUE(model.add_uint32(std::string(kVersionKey), kFormatVersion).is_ok());
  ASSERT_TRUE(add_bcq(model, "m", a, "rtn", 0.1).is_ok());
  expect_refused(write_image(files, "model.lutq", model), "a lutq model file, not an adapter");
  expect_refused(write_image(files, "noversion.gguf", base(false, true)), "not a lutq adapter");
  io::GgufWriter newer;
  ASSERT_TRUE(newer.add_uint32(std::string(kAdapterVersionKey), kAdapterFormatVersion + 1).is_ok());
  expect_refused(write_image(files, "newer.gguf", newer), "version");
  expect_refused(write_image(files, "nocodes.gguf", base(true, false)), "hash as 16 hex digits");
  io::GgufWriter badcodes = base(true, false);
  ASSERT_TRUE(badcodes.add_string("lutq.adapter.m.codes", "xyz").is_ok());
  expect_refused(write_image(files, "badcodes.gguf", badcodes), "16 hex digits");
  io::GgufWriter empty;
  ASSERT_TRUE(empty.add_uint32(std::string(kAdapterVersionKey), kAdapterFormatVersion).is_ok());
  expect_refused(write_image(files, "empty.gguf", empty), "no scales");
  format::BcqMatrix inf = a;
  inf.alpha[3] = 0x7c00;  // +inf
  io::GgufWriter infw;
  ASSERT_TRUE(infw.add_uint32(std::string(kAdapterVersionKey), kAdapterFormatVersion).is_ok());
  ASSERT_TRUE(add_scales(infw, "m", inf).is_ok());
  ASSERT_TRUE(infw.add_string("lutq.adapter.m.codes", "0123456789abcdef").is_ok());
  expect_refused(write_image(files, "inf.gguf", infw), "not finite");
  // A good file cut short anywhere is an error, never a crash.
  const std::string good = write_image(files, "good.gguf", base(true, true));
  ASSERT_TRUE(Adapter::read(good).is_ok());
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = files.add("cut.gguf");
  for (size_t len = 0; len < bytes.size(); len += 7) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(len));
    EXPECT_FALSE(Adapter::read(cut).is_ok()) << "cut at " << len << " of " << bytes.size();
  }
  EXPECT_FALSE(write_adapter(files.add("none.gguf"), "b", "d", {}).is_ok());
}

}  // namespace
}  // namespace lutq::lutqfile
