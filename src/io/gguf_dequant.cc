// Block layouts (ggml-common.h; fp16 = IEEE half, all little-endian, QK_K = 256):
//   q4_0 {fp16 d; u8 qs[16]}                 x = (nibble - 8)·d; low nibbles 0..15, high 16..31
//   q4_1 {fp16 d, m; u8 qs[16]}              x = nibble·d + m
//   q5_0 {fp16 d; u8 qh[4]; u8 qs[16]}       x = ((nibble | hbit<<4) - 16)·d; qh bit j ↔ element j
//   q5_1 {fp16 d, m; u8 qh[4]; u8 qs[16]}    x = (nibble | hbit<<4)·d + m
//   q8_0 {fp16 d; i8 qs[32]}                 x = q·d
//   q8_1 {fp16 d, s; i8 qs[32]}              x = q·d
//   q2_K {u8 scales[16]; u8 qs[64]; fp16 d, dmin}
//   q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d}
//   q4_K {fp16 d, dmin; u8 scales[12]; u8 qs[128]}
//   q5_K {fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
//   q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}
//   q8_K {f32 d; i8 qs[256]; i16 bsums[16]}  x = q·d
// The arithmetic follows ggml's reference code operation by operation (fp32, same order).
#include "io/gguf_dequant.h"

#include <bit>
#include <cstring>
#include <string>
#include <utility>

#include "core/fp16.h"

namespace lutq::io {
namespace {

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}
uint64_t rd64(const uint8_t* p) { return static_cast<uint64_t>(rd32(p)) | static_cast<uint64_t>(rd32(p + 4)) << 32; }
float half(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }

void block_q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    const int x0 = (qs[j] & 0x0F) - 8;
    const int x1 = (qs[j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

void block_q4_1(const uint8_t* b, float* y) {
  const float d = half(b);
  const float m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

void block_q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const uint32_t xh0 = ((qh >> j) << 4) & 0x10;
    const uint32_t xh1 = (qh >> (j + 12)) & 0x10;
    const int x0 = static_cast<int>((qs[j] & 0x0Fu) | xh0) - 16;
    const int x1 = static_cast<int>((qs[j] >> 4) | xh1) - 16;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

void block_q5_1(const uint8_t* b, float* y) {
  const float d = half(b);
  const float m = half(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const uint32_t xh0 = ((qh >> j) << 4) & 0x10;
    const uint32_t xh1 = (qh >> (j + 12)) & 0x10;
    y[j] = static_cast<float>((qs[j] & 0x0Fu) | xh0) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
  }
}

void block_q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
}

void block_q8_1(const uint8_t* b, float* y) {  // the block sum s at b+2 is not needed
  const float d = half(b);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
}

void block_q2_K(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half(b + 80);
  const float dmin = half(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      uint8_t sc = scales[is++];
      float dl = d * static_cast<float>(sc & 0xF);
      float ml = dmin * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
      sc = scales[is++];
      dl = d * static_cast<float>(sc & 0xF);
      ml = dmin * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16] >> shift) & 3) - ml;
      shift += 2;
    }
    q += 32;
  }
}

// The 16 6-bit scales of q3_K (stored +32): the low 4 bits of scale j are the low nibble of byte j
// (j < 8) or the high nibble of byte j-8; the high 2 bits are bits 2*(j/4)..+1 of byte 8 + j%4.
// Same result as ggml's kmask1/kmask2 word shuffling.
void q3_K_scales(const uint8_t* s, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int high = (s[8 + (j % 4)] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

void block_q3_K(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  int8_t scales[16];
  q3_K_scales(b + 96, scales);
  const float d_all = half(b + 108);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      float dl = d_all * static_cast<float>(scales[is++]);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl * static_cast<float>(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
      dl = d_all * static_cast<float>(scales[is++]);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl * static_cast<float>(((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
      }
      shift += 2;
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}

// ggml's get_scale_min_k4: 8 pairs of 6-bit (scale, min) packed in 12 bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The scale and min of sub-block j of a Q4_K / Q5_K block, applied to the block's d and dmin.
std::pair<float, float> k4_scale_min(int j, const uint8_t* scales, float d, float min) {
  uint8_t sc = 0;
  uint8_t mn = 0;
  scale_min_k4(j, scales, &sc, &mn);
  return {d * static_cast<float>(sc), min * static_cast<float>(mn)};
}

void block_q4_K(const uint8_t* b, float* y) {
  const float d = half(b);
  const float min = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    const auto [d1, m1] = k4_scale_min(is + 0, scales, d, min);
    const auto [d2, m2] = k4_scale_min(is + 1, scales, d, min);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void block_q5_K(const uint8_t* b, float* y) {
  const float d = half(b);
  const float min = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  unsigned u1 = 1;
  unsigned u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    const auto [d1, m1] = k4_scale_min(is + 0, scales, d, min);
    const auto [d2, m2] = k4_scale_min(is + 1, scales, d, min);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

void block_q6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void block_q8_K(const uint8_t* b, float* y) {
  const float d = std::bit_cast<float>(rd32(b));
  for (int j = 0; j < 256; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[4 + j]));
}

void block_f32(const uint8_t* b, float* y) { *y = std::bit_cast<float>(rd32(b)); }
void block_f16(const uint8_t* b, float* y) { *y = half(b); }
void block_bf16(const uint8_t* b, float* y) { *y = std::bit_cast<float>(static_cast<uint32_t>(rd16(b)) << 16); }
void block_f64(const uint8_t* b, float* y) { *y = static_cast<float>(std::bit_cast<double>(rd64(b))); }
void block_i8(const uint8_t* b, float* y) { *y = static_cast<float>(static_cast<int8_t>(b[0])); }
void block_i16(const uint8_t* b, float* y) { *y = static_cast<float>(static_cast<int16_t>(rd16(b))); }
void block_i32(const uint8_t* b, float* y) { *y = static_cast<float>(static_cast<int32_t>(rd32(b))); }

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return block_f32;
    case GgmlType::F16: return block_f16;
    case GgmlType::BF16: return block_bf16;
    case GgmlType::F64: return block_f64;
    case GgmlType::I8: return block_i8;
    case GgmlType::I16: return block_i16;
    case GgmlType::I32: return block_i32;
    case GgmlType::Q4_0: return block_q4_0;
    case GgmlType::Q4_1: return block_q4_1;
    case GgmlType::Q5_0: return block_q5_0;
    case GgmlType::Q5_1: return block_q5_1;
    case GgmlType::Q8_0: return block_q8_0;
    case GgmlType::Q8_1: return block_q8_1;
    case GgmlType::Q2_K: return block_q2_K;
    case GgmlType::Q3_K: return block_q3_K;
    case GgmlType::Q4_K: return block_q4_K;
    case GgmlType::Q5_K: return block_q5_K;
    case GgmlType::Q6_K: return block_q6_K;
    case GgmlType::Q8_K: return block_q8_K;
    default: return nullptr;
  }
}

}  // namespace

bool dequantize_supported(GgmlType type) { return block_fn(type) != nullptr; }

Status dequantize_row(GgmlType type, const uint8_t* src, size_t src_bytes, float* dst, int64_t n) {
  const std::optional<GgmlTypeTraits> traits = ggml_type_traits(type);
  if (!traits) {
    return Status::unsupported("unknown ggml type " + std::to_string(static_cast<uint32_t>(type)));
  }
  const BlockFn fn = block_fn(type);
  if (fn == nullptr) {
    return Status::unsupported(std::string("dequantization of ") + ggml_type_name(type) + " is not supported");
  }
  if (n < 0 || n % traits->block_size != 0) {
    return Status::invalid("n=" + std::to_string(n) + " is not a non-negative multiple of the " + ggml_type_name(type) +
                           " block size " + std::to_string(traits->block_size));
  }
  const int64_t blocks = n / traits->block_size;
  // blocks * type_size, overflow-checked (type_size <= 292).
  if (static_cast<uint64_t>(blocks) > src_bytes / static_cast<uint64_t>(traits->type_size)) {
    return Status::invalid(std::to_string(n) + " " + ggml_type_name(type) + " elements need " + std::to_string(blocks) +
                           " blocks of " + std::to_string(traits->type_size) + " bytes, the source has " +
                           std::to_string(src_bytes) + " bytes");
  }
  if (n > 0 && (src == nullptr || dst == nullptr)) return Status::invalid("null source or destination");
  for (int64_t i = 0; i < blocks; ++i) {
    fn(src + i * traits->type_size, dst + i * traits->block_size);
  }
  return Status::ok();
}

}  // namespace lutq::io
