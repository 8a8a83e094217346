// The int8 GEMM path for BCQ matrices (m >= 2: small batch and prefill; docs/kernels.md "The
// int8 GEMM path"). Per-OC only.
//
//   Weights: per (row r, group j) the 2^q BCQ levels L[code] = Σ_i (bit_i(code) ? +α_i : −α_i) + z
//     (fp32, planes in order, then the offset) are rounded to int8 with the group's own scale:
//     s_w = max_code |L| / 127, wq[code] = round_half_even(L[code] · (127 / max |L|)) in [-127, 127].
//     Packed once (pack_bcq_int8): the q bit-planes in "quad" order (a 64-bit mask per 16 rows x 4
//     columns), and per (16-row tile, group) the level table, stored as u8 wq + 128, and s_w.
//   Activations, per call: per row t and group j of k (the weights' groups),
//     s_x = max |x| / 127, xq = round_half_even(x · (127 / max |x|)) (s8), and −128·Σ_{c in j} xq.
//   y[t,r] = Σ_j fma order: acc = fma(float(I[t,r,j]), s_w[r,j]·s_x[t,j], acc) from acc = +0, with
//     I[t,r,j] = Σ_{c in j} xq[t,c]·wq[r,c] exact in int32 (the kernel: Σ (wq + 128)·xq − 128·Σ xq,
//     vpdpbusd's u8 x s8 with the activations as the broadcast operand).
//   The AVX-512 kernel (bcq_int8_avx512.cc) equals bcq_int8_gemm_ref bit for bit.
//
// Error against the exact product (per element; derivation in docs/kernels.md):
//   |y − x·Wᵀ| <= Σ_j Σ_{c in j} ( |x_c|·s_w/2 + |W_c|·s_x/2 + s_w·s_x/4 ) + fp32 rounding terms.
#pragma once

#include <cstdint>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

// kAuto is a request only (BcqLinear::create, LUTQ_GEMM_PATH=auto): choose_path decides per call,
// and never returns it.
enum class GemmPath : uint8_t { kLut = 0, kInt8Gemm = 1, kAuto = 2 };
const char* gemm_path_name(GemmPath p);

// The policy (docs/kernels.md "Policy"): which path BcqLinear::forward takes for m activation
// rows. int8 GEMM only where it exists (avx512 with VNNI + VBMI, or avx2 with groups a multiple
// of 64; per-OC, q <= 4, fast precision) and where it measured faster than the LUT kernels;
// `--precision exact` always stays on the LUT.
// `amx`: the CPU runs the AMX kernel and it is allowed (then every q <= 4 takes the int8 path
// from a smaller m, where bcq_int8_amx_supported(g)).
// `uniform`: the matrix is a uniform grid (bcq_uniform_grid), which avx2 multiplies from a byte
// code copy with vpmaddubsw (kernels/bytes; docs/kernels.md "Uniform grids on avx2").
GemmPath choose_path(int64_t m, int64_t n, int64_t k, int q, int64_t g, format::Orientation orientation, Isa isa,
                     Precision precision, bool amx = false, bool uniform = false);
// Whether a matrix can take the int8 path at all (per-OC, q <= 4, g % 4 == 0).
bool bcq_int8_supported(const format::BcqMatrix& w);

constexpr int64_t kInt8TileRows = 16;  // rows per quad vector (16 rows x 4 columns = 64 bytes) and per AMX tile

// Which code layout pack_bcq_int8 writes: quads (plane masks) for the AVX-512 kernel or rows
// (row_codes) for the AMX kernel. The scalar spec reads either.
enum class Int8Codes : uint8_t { kQuads = 1, kRows = 2 };

struct BcqInt8Packed {
  int64_t n = 0, k = 0, g = 0;
  int q = 0;
  int64_t tiles = 0;  // ceil(n / 16); padding rows have all-zero levels
  int64_t groups = 0;  // k / g
  int64_t lut_bytes = 0;  // per (tile, group): 16·2^q int8 levels, padded to a multiple of 64
  // Where packed with quads: mask[(tile*(k/4) + quad)*q + i]: bit 4·row + j = bit_i(16·tile +
  // row, 4·quad + j), uint64 each (huge pages where large, as the other layouts).
  AlignedBuffer masks;
  const uint64_t* mask_words() const { return masks.as<uint64_t>(); }
  bool has_quads() const { return masks.size() != 0; }
  AlignedBuffer luts;  // [tile][group][lut_bytes]: u8 wq + 128 of (row, code) at row·2^q + code
                       // (16 bytes of slack at the end: a row's table is read as 16 bytes)
  std::vector<float> ws;  // [tile][group][16]: s_w
  // Where packed with rows (the AMX kernel; needs g % 64 == 0): the codes
  // row by row, [tile][group][row 16][g / per_byte] so that a tile streams in order. q >= 3:
  // nibbles, per 64 columns 32 bytes, byte b holding column b's code in its low nibble and
  // column b + 32's in its high one. q <= 2: 2-bit fields, per 64 columns 16 bytes, byte b
  // holding columns b, b + 16, b + 32, b + 48 in bits 0-1, 2-3, 4-5, 6-7. Padding rows: code 0.
  AlignedBuffer row_codes;  // huge pages where large, as the LUT layout's (TLB reach)
  int64_t codes_per_byte() const { return q <= 2 ? 4 : 2; }

  int8_t level(int64_t r, int64_t c) const;  // wq[r,c]
  int64_t bytes() const;  // memory held
};

// Precondition: bcq_int8_supported(w), and bcq_int8_amx_supported(g) where codes include rows.
BcqInt8Packed pack_bcq_int8(const format::BcqMatrix& w, Int8Codes codes = Int8Codes::kQuads);

// Activations quantized per (row, group) as above.
struct QuantizedActs {
  int64_t m = 0, k = 0, groups = 0;
  // Row stride of xq: k + 64, so that rows k = 4096 apart do not all map to the same L1 sets.
  int64_t stride = 0;
  // [round_up(m, 16)][stride], the first k of each row used; rows past m are zero (AMX loads
  // activation tiles of 16 rows).
  std::vector<int8_t> xq;
  std::vector<float> sx;  // [m][groups]; NaN where a group holds a non-finite value
  std::vector<int32_t> corr;  // [m][groups]: −128·Σ_{c in group} xq
};
QuantizedActs quantize_acts(const float* x, int64_t m, int64_t k, int64_t g);
// The same, bit for bit, with AVX-512 (precondition: bcq_int8_avx512_available) or AVX2
// (precondition: bcq_int8_avx2_available).
QuantizedActs quantize_acts_avx512(const float* x, int64_t m, int64_t k, int64_t g);
QuantizedActs quantize_acts_avx2(const float* x, int64_t m, int64_t k, int64_t g);
// Shapes and zero-fills the fields (xq rows padded to a multiple of 16).
QuantizedActs zeroed_acts(int64_t m, int64_t k, int64_t g);
// zeroed_acts, then `group` on every (row, group): its g values in, xq / s_x / correction out
// (the SIMD quantizers' shared loop).
using QuantizeGroupFn = void (*)(const float* xs, int64_t g, int8_t* xq, float& sx, int32_t& corr);
QuantizedActs quantize_acts_by_group(const float* x, int64_t m, int64_t k, int64_t g, QuantizeGroupFn group);

// The scalar spec. y[m,n], stride n.
void bcq_int8_gemm_ref(const BcqInt8Packed& w, const QuantizedActs& xa, float* y);
// The AVX-512 VNNI + VBMI kernel. Preconditions: the CPU has both, w packed with quads.
void bcq_int8_gemm_avx512(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool);
bool bcq_int8_avx512_available(const CpuFeatures& cpu);
// The AMX kernel (bcq_int8_amx.cc; docs/kernels.md "AMX"): the weights are A tiles (16 output
// rows x 64 columns) expanded row by row from row_codes with one vpermb per 64 weights, the
// activations B tiles, TDPBUSD into C tiles of 16 outputs x 16 activation rows. Preconditions:
// bcq_int8_amx_available(cpu), bcq_int8_amx_supported(w.g), w packed with rows.
void bcq_int8_gemm_amx(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool);
bool bcq_int8_amx_available(const CpuFeatures& cpu);
bool bcq_int8_amx_supported(int64_t g);  // groups a multiple of 64 (one tile step of k)
// The AVX2 kernel (bcq_int8_avx2.cc; docs/kernels.md "The AVX2 int8 kernel"): per (tile, group)
// the 16 rows expanded from row_codes to int16 levels by vpshufb (a row's 2^q levels are one
// 16-byte table), multiplied with int16 activations by vpmaddwd. Preconditions:
// bcq_int8_avx2_available(cpu), bcq_int8_avx2_supported(w.g), w packed with rows.
void bcq_int8_gemm_avx2(const BcqInt8Packed& w, const QuantizedActs& xa, float* y, ThreadPool& pool);
bool bcq_int8_avx2_available(const CpuFeatures& cpu);
bool bcq_int8_avx2_supported(int64_t g);  // the row layout's: groups a multiple of 64

// Which kernel runs the int8 path. Every kernel equals the scalar spec bit for bit.
enum class Int8Kernel : uint8_t { kRef = 0, kAvx512 = 1, kAmx = 2, kAvx2 = 3 };
// The fastest kernel the CPU runs for w as packed: AMX where available, supported and packed
// with rows (unless allow_amx is false), else AVX-512 where packed with quads, else AVX2 where
// packed with rows, else the spec.
Int8Kernel best_int8_kernel(const CpuFeatures& cpu, const BcqInt8Packed& w, bool allow_amx = true);

// Quantizes x and runs `kernel` (which must suit w's packing: best_int8_kernel's choice does).
void bcq_int8_gemm(const BcqInt8Packed& w, const float* x, int64_t m, float* y, ThreadPool& pool, Int8Kernel kernel);

}  // namespace lutq::kernels
