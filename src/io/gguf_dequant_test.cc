// Hand-built ggml blocks with known scales and quants. Expected values are computed here from the
// block layout, element by element (where each element's bits live), independently of the
// loop structure of the dequantizers, plus literal spot values worked out by hand.
#include "io/gguf_dequant.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

namespace lutq::io {
namespace {

// fp16 bit patterns.
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfHalf = 0x3800;     // 0.5
constexpr uint16_t kHalfQuarter = 0x3400;  // 0.25
constexpr uint16_t kHalfMinusOne = 0xbc00;

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

std::vector<float> run(GgmlType type, const std::vector<uint8_t>& block, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n), -12345.0f);
  const Status s = dequantize_row(type, block.data(), block.size(), out.data(), n);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return out;
}

void expect_all(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << "element " << i;
}

TEST(GgufDequant, PlainFloatAndIntegerTypes) {
  expect_all(run(GgmlType::F32, {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc1}, 2), {1.0f, -10.0f});
  // f16: 1/3 rounded, the smallest subnormal 2^-24, -0, +inf.
  const std::vector<float> h = run(GgmlType::F16, {0x55, 0x35, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7c}, 4);
  EXPECT_EQ(h[0], 0.333251953125f);
  EXPECT_EQ(h[1], std::ldexp(1.0f, -24));
  EXPECT_TRUE(h[2] == 0.0f && std::signbit(h[2]));
  EXPECT_TRUE(std::isinf(h[3]));
  // bf16 = the top half of an fp32: 1.0, -3.0, 3.140625.
  expect_all(run(GgmlType::BF16, {0x80, 0x3f, 0x40, 0xc0, 0x49, 0x40}, 3), {1.0f, -3.0f, 3.140625f});
  expect_all(run(GgmlType::I8, {0xff, 0x7f}, 2), {-1.0f, 127.0f});
  expect_all(run(GgmlType::I16, {0x00, 0x80}, 1), {-32768.0f});
  expect_all(run(GgmlType::I32, {0x40, 0x42, 0x0f, 0x00}, 1), {1000000.0f});
  expect_all(run(GgmlType::F64, {0, 0, 0, 0, 0, 0, 0xf8, 0x3f}, 1), {1.5f});
}

TEST(GgufDequant, Q4_0TwoBlocks) {
  std::vector<uint8_t> b(2 * 18, 0);
  put16(b, 0, kHalfHalf);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  put16(b, 18, kHalfMinusOne);
  for (int j = 0; j < 16; ++j) b[20 + j] = 0x1f;  // low nibble 15, high nibble 1
  std::vector<float> want(64);
  for (int j = 0; j < 16; ++j) {
    want[j] = static_cast<float>(j - 8) * 0.5f;              // low nibbles: elements 0..15
    want[16 + j] = static_cast<float>((15 - j) - 8) * 0.5f;  // high nibbles: elements 16..31
    want[32 + j] = -7.0f;                                    // (15 - 8) * -1
    want[48 + j] = 7.0f;                                     // (1 - 8) * -1
  }
  const std::vector<float> got = run(GgmlType::Q4_0, b, 64);
  expect_all(got, want);
  EXPECT_EQ(got[0], -4.0f);
  EXPECT_EQ(got[15], 3.5f);
  EXPECT_EQ(got[16], 3.5f);
  EXPECT_EQ(got[31], -4.0f);
}

TEST(GgufDequant, Q4_1) {
  std::vector<uint8_t> b(20, 0);
  put16(b, 0, kHalfHalf);      // d
  put16(b, 2, kHalfMinusOne);  // m
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = static_cast<float>(j) * 0.5f - 1.0f;
    want[16 + j] = static_cast<float>(15 - j) * 0.5f - 1.0f;
  }
  const std::vector<float> got = run(GgmlType::Q4_1, b, 32);
  expect_all(got, want);
  EXPECT_EQ(got[0], -1.0f);
  EXPECT_EQ(got[15], 6.5f);
  EXPECT_EQ(got[16], 6.5f);
}

// qh bit k is the fifth bit of element k.
constexpr uint32_t kQ5HighBits = (1u << 0) | (1u << 17) | (1u << 31);

TEST(GgufDequant, Q5_0) {
  std::vector<uint8_t> b(22, 0);
  put16(b, 0, kHalfQuarter);
  put32(b, 2, kQ5HighBits);
  for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>(j | (j << 4));
  std::vector<float> want(32);
  for (int e = 0; e < 32; ++e) {
    const int q = (e % 16) + 16 * static_cast<int>((kQ5HighBits >> e) & 1u);
    want[e] = static_cast<float>(q - 16) * 0.25f;
  }
  const std::vector<float> got = run(GgmlType::Q5_0, b, 32);
  expect_all(got, want);
  EXPECT_EQ(got[0], 0.0f);    // (0 + 16 - 16) / 4
  EXPECT_EQ(got[1], -3.75f);  // (1 - 16) / 4
  EXPECT_EQ(got[16], -4.0f);  // (0 - 16) / 4
  EXPECT_EQ(got[17], 0.25f);  // (1 + 16 - 16) / 4
  EXPECT_EQ(got[31], 3.75f);  // (15 + 16 - 16) / 4
}

TEST(GgufDequant, Q5_1) {
  std::vector<uint8_t> b(24, 0);
  put16(b, 0, kHalfHalf);  // d
  put16(b, 2, kHalfOne);   // m
  put32(b, 4, kQ5HighBits);
  for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<uint8_t>(j | (j << 4));
  std::vector<float> want(32);
  for (int e = 0; e < 32; ++e) {
    const int q = (e % 16) + 16 * static_cast<int>((kQ5HighBits >> e) & 1u);
    want[e] = static_cast<float>(q) * 0.5f + 1.0f;
  }
  const std::vector<float> got = run(GgmlType::Q5_1, b, 32);
  expect_all(got, want);
  EXPECT_EQ(got[0], 9.0f);
  EXPECT_EQ(got[17], 9.5f);
  EXPECT_EQ(got[31], 16.5f);
}

TEST(GgufDequant, Q8_0AndQ8_1) {
  std::vector<uint8_t> b(34, 0);
  put16(b, 0, kHalfQuarter);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(8 * j - 128));
  std::vector<float> want(32);
  for (int j = 0; j < 32; ++j) want[j] = static_cast<float>(2 * j - 32);  // (8j - 128) / 4
  expect_all(run(GgmlType::Q8_0, b, 32), want);

  std::vector<uint8_t> c(36, 0);
  put16(c, 0, kHalfHalf);
  put16(c, 2, 0x7c00);  // the block sum s (inf here) plays no part
  for (int j = 0; j < 32; ++j) c[4 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  for (int j = 0; j < 32; ++j) want[j] = static_cast<float>(j - 16) * 0.5f;
  expect_all(run(GgmlType::Q8_1, c, 32), want);
}

TEST(GgufDequant, Q8_K) {
  std::vector<uint8_t> b(292, 0x5a);  // bsums: arbitrary
  put32(b, 0, std::bit_cast<uint32_t>(0.125f));
  for (int j = 0; j < 256; ++j) b[4 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 128));
  std::vector<float> want(256);
  for (int j = 0; j < 256; ++j) want[j] = static_cast<float>(j - 128) * 0.125f;
  expect_all(run(GgmlType::Q8_K, b, 256), want);
}

// Packs 8 (scale, min) 6-bit pairs the way ggml's get_scale_min_k4 unpacks them: pairs 0..3 in
// the low 6 bits of bytes 0..3 / 4..7, pairs 4..7 split into a low nibble in bytes 8..11 and the
// top 2 bits in bits 6..7 of bytes 0..3 / 4..7.
std::vector<uint8_t> pack_k4_scales(const int sc[8], const int mn[8]) {
  std::vector<uint8_t> s(12, 0);
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  return s;
}

constexpr int kK4Scales[8] = {1, 2, 3, 4, 5, 60, 61, 62};
constexpr int kK4Mins[8] = {0, 1, 2, 3, 10, 20, 30, 63};

TEST(GgufDequant, Q4_K) {
  std::vector<uint8_t> b(144, 0);
  put16(b, 0, kHalfOne);   // d
  put16(b, 2, kHalfHalf);  // dmin
  const std::vector<uint8_t> scales = pack_k4_scales(kK4Scales, kK4Mins);
  std::copy(scales.begin(), scales.end(), b.begin() + 4);
  for (int i = 0; i < 128; ++i) b[16 + i] = static_cast<uint8_t>((i % 16) | ((15 - i % 16) << 4));
  // Element e: sub-block s = e/32 (scale s), byte (s/2)*32 + e%32, low nibble for even s.
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    const uint8_t byte = b[16 + (s / 2) * 32 + e % 32];
    const int q = s % 2 == 0 ? (byte & 15) : (byte >> 4);
    want[e] = 1.0f * static_cast<float>(kK4Scales[s]) * static_cast<float>(q) - 0.5f * static_cast<float>(kK4Mins[s]);
  }
  const std::vector<float> got = run(GgmlType::Q4_K, b, 256);
  expect_all(got, want);
  EXPECT_EQ(got[0], 0.0f);      // scale 1 * 0 - 0.5 * 0
  EXPECT_EQ(got[31], 15.0f);    // scale 1 * 15
  EXPECT_EQ(got[32], 29.5f);    // high nibble of byte 0: 2 * 15 - 0.5 * 1
  EXPECT_EQ(got[128], -5.0f);   // 5 * 0 - 0.5 * 10
  EXPECT_EQ(got[160], 890.0f);  // 60 * 15 - 0.5 * 20
  EXPECT_EQ(got[255], -31.5f);  // 62 * 0 - 0.5 * 63
}

TEST(GgufDequant, Q5_K) {
  std::vector<uint8_t> b(176, 0);
  put16(b, 0, kHalfOne);
  put16(b, 2, kHalfHalf);
  const std::vector<uint8_t> scales = pack_k4_scales(kK4Scales, kK4Mins);
  std::copy(scales.begin(), scales.end(), b.begin() + 4);
  for (int l = 0; l < 32; ++l) b[16 + l] = l % 2 == 0 ? 0xaa : 0x55;  // qh
  for (int i = 0; i < 128; ++i) b[48 + i] = static_cast<uint8_t>((i % 16) | ((15 - i % 16) << 4));
  // As q4_K, plus the fifth bit of element e: bit s of qh[e % 32].
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    const int l = e % 32;
    const uint8_t byte = b[48 + (s / 2) * 32 + l];
    const int q = (s % 2 == 0 ? (byte & 15) : (byte >> 4)) + 16 * ((b[16 + l] >> s) & 1);
    want[e] = static_cast<float>(kK4Scales[s]) * static_cast<float>(q) - 0.5f * static_cast<float>(kK4Mins[s]);
  }
  const std::vector<float> got = run(GgmlType::Q5_K, b, 256);
  expect_all(got, want);
  EXPECT_EQ(got[0], 0.0f);       // qh[0] = 0xaa: bit 0 clear
  EXPECT_EQ(got[32], 61.5f);     // 2 * (15 + 16) - 0.5 * 1
  EXPECT_EQ(got[160], 1850.0f);  // 60 * (15 + 16) - 0.5 * 20
}

TEST(GgufDequant, Q6_K) {
  std::vector<uint8_t> b(210, 0);
  int8_t sc[16];
  for (int i = 0; i < 16; ++i) sc[i] = static_cast<int8_t>(i % 2 == 0 ? i + 1 : -(i + 1));
  for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(sc[i]);
  put16(b, 208, kHalfHalf);
  // Element e: half h = e/128; within it quarter g = (e%128)/32 and l = e%32. Low 4 bits: byte
  // h*64 + l (+32 for odd g), low nibble for g < 2; high 2 bits: bits 2g of qh[h*32 + l];
  // scale h*8 + l/16 + 2g.
  std::vector<int> q6(256);
  for (int e = 0; e < 256; ++e) {
    q6[e] = (e * 5) % 64;
    const int h = e / 128;
    const int g = (e % 128) / 32;
    const int l = e % 32;
    b[h * 64 + l + 32 * (g % 2)] |= static_cast<uint8_t>((q6[e] & 15) << (g >= 2 ? 4 : 0));
    b[128 + h * 32 + l] |= static_cast<uint8_t>((q6[e] >> 4) << (2 * g));
  }
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    const int scale = sc[(e / 128) * 8 + (e % 32) / 16 + 2 * ((e % 128) / 32)];
    want[e] = 0.5f * static_cast<float>(scale) * static_cast<float>(q6[e] - 32);
  }
  const std::vector<float> got = run(GgmlType::Q6_K, b, 256);
  expect_all(got, want);
  EXPECT_EQ(got[0], -16.0f);     // 0.5 * 1 * (0 - 32)
  EXPECT_EQ(got[255], -216.0f);  // q = 1275 % 64 = 59, scale 15 = -16: 0.5 * -16 * 27
}

// q2_K / q3_K share the placement of the 2 low bits: element e, half h = e/128, j = (e%128)/32
// (bit pair 2j), k = (e%32)/16, l = e%16 -> byte h*32 + k*16 + l; scale h*8 + 2j + k.
int k23_byte(int e) { return (e / 128) * 32 + ((e % 32) / 16) * 16 + e % 16; }
int k23_shift(int e) { return 2 * ((e % 128) / 32); }
int k23_scale(int e) { return (e / 128) * 8 + 2 * ((e % 128) / 32) + (e % 32) / 16; }

TEST(GgufDequant, Q2_K) {
  std::vector<uint8_t> b(84, 0);
  for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>(i | ((15 - i) << 4));  // scale i, min 15-i
  put16(b, 80, kHalfHalf);                                                        // d
  put16(b, 82, kHalfQuarter);                                                     // dmin
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    q[e] = (e / 3) % 4;
    b[16 + k23_byte(e)] |= static_cast<uint8_t>(q[e] << k23_shift(e));
  }
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    const int is = k23_scale(e);
    want[e] = 0.5f * static_cast<float>(is) * static_cast<float>(q[e]) - 0.25f * static_cast<float>(15 - is);
  }
  const std::vector<float> got = run(GgmlType::Q2_K, b, 256);
  expect_all(got, want);
  EXPECT_EQ(got[0], -3.75f);  // 0.5 * 0 * 0 - 0.25 * 15
  EXPECT_EQ(got[255], 7.5f);  // q = 85 % 4 = 1, scale 15, min 0
}

TEST(GgufDequant, Q3_K) {
  std::vector<uint8_t> b(110, 0);
  // 16 scales, 6 bits each, stored +32: low 4 bits in the low (j < 8) or high (j >= 8) nibble of
  // byte j % 8, high 2 bits at bits 2*(j/4) of byte 8 + j%4.
  int s6[16];
  for (int j = 0; j < 16; ++j) {
    s6[j] = 4 * j + 2;
    b[96 + j % 8] |= static_cast<uint8_t>((s6[j] & 15) << (j < 8 ? 0 : 4));
    b[96 + 8 + j % 4] |= static_cast<uint8_t>((s6[j] >> 4) << (2 * (j / 4)));
  }
  put16(b, 108, kHalfQuarter);
  // The third bit: hmask[(e%32)] bit (e/128)*4 + j; set means +0, clear means -4.
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    const int low = e % 4;
    const int high = (e / 7) % 2;
    q[e] = low - (high ? 0 : 4);
    b[32 + k23_byte(e)] |= static_cast<uint8_t>(low << k23_shift(e));
    if (high) b[e % 32] |= static_cast<uint8_t>(1 << ((e / 128) * 4 + (e % 128) / 32));
  }
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    want[e] = 0.25f * static_cast<float>(s6[k23_scale(e)] - 32) * static_cast<float>(q[e]);
  }
  const std::vector<float> got = run(GgmlType::Q3_K, b, 256);
  expect_all(got, want);
  EXPECT_EQ(got[0], 30.0f);  // 0.25 * (2 - 32) * (0 - 4)
}

TEST(GgufDequant, RowErrors) {
  std::vector<uint8_t> b(18 * 2, 0);
  std::vector<float> out(64);
  EXPECT_TRUE(dequantize_row(GgmlType::Q4_0, b.data(), b.size(), out.data(), 64).is_ok());
  EXPECT_TRUE(dequantize_row(GgmlType::Q4_0, b.data(), b.size(), out.data(), 0).is_ok());
  const Status not_multiple = dequantize_row(GgmlType::Q4_0, b.data(), b.size(), out.data(), 33);
  EXPECT_NE(not_multiple.message().find("block size 32"), std::string::npos) << not_multiple.message();
  const Status short_src = dequantize_row(GgmlType::Q4_0, b.data(), 35, out.data(), 64);
  EXPECT_NE(short_src.message().find("source has 35 bytes"), std::string::npos) << short_src.message();
  EXPECT_FALSE(dequantize_row(GgmlType::Q4_0, b.data(), b.size(), out.data(), -32).is_ok());
  const Status iq = dequantize_row(GgmlType::IQ2_XXS, b.data(), b.size(), out.data(), 0);
  EXPECT_EQ(iq.code(), StatusCode::kUnsupported);
  EXPECT_NE(iq.message().find("iq2_xxs"), std::string::npos);
  const Status unknown = dequantize_row(static_cast<GgmlType>(99), b.data(), b.size(), out.data(), 0);
  EXPECT_NE(unknown.message().find("unknown ggml type 99"), std::string::npos);
  EXPECT_TRUE(dequantize_supported(GgmlType::Q6_K));
  EXPECT_FALSE(dequantize_supported(GgmlType::IQ4_XS));
}

TEST(GgufDequant, TypeNamesAndSizes) {
  EXPECT_STREQ(ggml_type_name(GgmlType::Q4_K), "q4_K");
  EXPECT_STREQ(ggml_type_name(GgmlType::BF16), "bf16");
  EXPECT_STREQ(ggml_type_name(static_cast<GgmlType>(4)), "unknown");  // removed q4_2
  const int64_t dims[] = {512, 3};
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::Q4_K, dims).value(), 2u * 144 * 3);
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::Q6_K, dims).value(), 2u * 210 * 3);
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::Q5_0, dims).value(), 16u * 22 * 3);
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::BF16, dims).value(), 512u * 2 * 3);
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::Q3_K, dims).value(), 2u * 110 * 3);
  EXPECT_EQ(ggml_tensor_bytes(GgmlType::Q2_K, dims).value(), 2u * 84 * 3);
}

}  // namespace
}  // namespace lutq::io
