#include "support/random_bcq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/fp16.h"
#include "format/scale_codes.h"

namespace lutq::testing {

uint64_t test_seed() {
  if (const char* s = std::getenv("LUTQ_TEST_SEED"); s != nullptr && *s != '\0') return std::stoull(s);
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

format::BcqMatrix random_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng) {
  format::BcqMatrix w = format::make_empty(n, k, cfg).value();
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w.bits) b = static_cast<uint8_t>(byte(rng));
  if (k % 8 != 0) {  // clear padding bits past k
    const auto keep = static_cast<uint8_t>((1u << (k % 8)) - 1u);
    for (int64_t row = 0; row < cfg.q * n; ++row) w.bits[static_cast<size_t>((row + 1) * w.row_bytes() - 1)] &= keep;
  }
  std::normal_distribution<float> alpha(0.0f, 1.0f);
  std::normal_distribution<float> offset(0.0f, 0.5f);
  for (auto& a : w.alpha) a = fp32_to_fp16(alpha(rng));
  for (auto& z : w.offset) z = fp32_to_fp16(offset(rng));
  return w;
}

format::BcqMatrix uniform_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng) {
  format::BcqMatrix w = random_bcq(n, k, cfg, rng);
  const size_t q = static_cast<size_t>(cfg.q);
  for (size_t s = 0; s < w.alpha.size(); s += q) {
    const float a0 = fp16_to_fp32(w.alpha[s]);
    for (size_t i = 1; i < q; ++i) w.alpha[s + i] = fp32_to_fp16(std::ldexp(a0, static_cast<int>(i)));
  }
  return w;
}

format::BcqMatrix uniform_coded_bcq(int64_t n, int64_t k, const format::BcqConfig& cfg, std::mt19937_64& rng) {
  format::BcqMatrix w = format::encode_scales(random_bcq(n, k, cfg, rng), 8).value();
  const size_t q = static_cast<size_t>(cfg.q);
  for (size_t line = 0; line < w.codes.alpha_super.size(); line += q) {
    for (size_t i = 1; i < q; ++i) {
      w.codes.alpha_super[line + i] =
          fp32_to_fp16(std::ldexp(fp16_to_fp32(w.codes.alpha_super[line]), static_cast<int>(i)));
    }
  }
  for (size_t s = 0; s < w.codes.alpha_code.size(); s += q) {
    for (size_t i = 1; i < q; ++i) w.codes.alpha_code[s + i] = w.codes.alpha_code[s];
  }
  if (!format::decode_scales(w).is_ok()) std::abort();  // finite supers: it cannot fail
  return w;
}

std::vector<float> random_activations(int64_t m, int64_t k, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> pick(0, k - 1);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = d(rng);
  for (int64_t r = 0; r < m; ++r) {
    for (int o = 0; o < 2; ++o) x[static_cast<size_t>(r * k + pick(rng))] *= 20.0f;  // outlier features
  }
  return x;
}

void expect_same_bcq(const format::BcqMatrix& got, const format::BcqMatrix& want) {
  EXPECT_EQ(got.n, want.n);
  EXPECT_EQ(got.k, want.k);
  EXPECT_EQ(got.cfg.q, want.cfg.q);
  EXPECT_EQ(got.cfg.g, want.cfg.g);
  EXPECT_EQ(got.cfg.orientation, want.cfg.orientation);
  EXPECT_EQ(got.cfg.has_offset, want.cfg.has_offset);
  EXPECT_EQ(got.bits, want.bits);
  EXPECT_EQ(got.alpha, want.alpha);
  EXPECT_EQ(got.offset, want.offset);
  EXPECT_EQ(got.codes.bits, want.codes.bits);
  EXPECT_EQ(got.codes.alpha_code, want.codes.alpha_code);
  EXPECT_EQ(got.codes.alpha_super, want.codes.alpha_super);
  EXPECT_EQ(got.codes.offset_code, want.codes.offset_code);
  EXPECT_EQ(got.codes.offset_range, want.codes.offset_range);
}

}  // namespace lutq::testing
