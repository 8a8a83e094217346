// The byte-code path for uniform-grid BCQ matrices (docs/kernels.md "The byte-code path").
//
// RTN stores a q-bit uniform grid as BCQ with α_i = α_0·2^i and an offset z, so per (row r,
// group j), with the integer code c = Σ_i 2^i·b_i, every weight is w = α_0·(2c − (2^q − 1)) + z and
//   Σ_c x_c·w_c = 2α_0·Σ_c x_c·c_c + (z − α_0·(2^q − 1))·Σ_c x_c.
// For q >= 5 the LUT kernels are compute-bound (4 instructions per plane per 512 weights); here
// the codes are stored as one byte each and Σ xq·code is one exact int32 per (row, group) from
// vpdpbusd (u8 codes x s8 activations): one 64-byte load and one VNNI op per 64 weights.
//
//   Weights (pack_bcq_bytes): per 16-row tile, the k/4 quads of 64 bytes (byte 4·row + j of quad
//     d = code of (16·tile + row, 4·d + j)), then per (tile, group) 16 floats A = 2·α_0 and 16
//     floats B = z − α_0·(2^q − 1) (fp32: z + (−(2^q−1))·α_0 rounded once). Padding rows: code 0,
//     A = B = 0. The byte layout replaces the planes (unpack_bcq_bytes gives them back exactly).
//   Activations: quantize_acts (bcq_int8.h): per (row t, group j) s_x = max |x| / 127,
//     xq = round_half_even(x · 127 / max |x|), S = Σ xq (from corr = −128·S); s_x NaN where the
//     group holds a non-finite value. (kFast's LUT tables quantize sums of 4 activations with
//     one scale per block, step up to 4·max|x|/127; this is one activation per step, no coarser.)
//   Output: acc = +0; per group in order: I = Σ xq·code (int32, exact),
//     v = A · float(I); v = fma(B, float(S), v); acc = fma(v, s_x, acc).  y[t, r] = acc.
//   The AVX-512 VNNI and AVX2 kernels equal bcq_bytes_gemm_ref bit for bit.
//
// Error against the exact product (per element, derivation in docs/kernels.md):
//   |y − x·Wᵀ| <= Σ_c |W_c|·s_x(c)/2 + fp32 rounding terms (B, float(I), the per-group fmas).
#pragma once

#include <cstdint>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "kernels/int8/bcq_int8.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

constexpr int64_t kBytesTileRows = 16;  // rows per quad vector: 16 rows x 4 columns = 64 bytes

// Whether w is a uniform grid the byte path can hold: per-OC, offset, q in 5..8, g and k
// multiples of 4, g <= 65536 (int32 sums), and every group's fp16-decoded scales exactly
// α_i == α_0·2^i (finite).
bool bcq_bytes_uniform(const format::BcqMatrix& w);
// The same test at any q in 1..8: where q <= 4 the LUT layout stays, and the int8 path's prefill
// copy on avx2 is byte codes (BcqLinear; the AVX2 kernel's vpmaddubsw branch).
bool bcq_uniform_grid(const format::BcqMatrix& w);

// Which byte kernel this CPU runs for a backend: the policy (docs/kernels.md "The byte-code
// path"). Only kFast on avx512 (with VNNI) and avx2; exact precision, scalar, ref and cuda keep
// the LUT path. Does not look at the matrix (see use_byte_path).
enum class ByteKernel : uint8_t { kNone = 0, kAvx512 = 1, kAvx2 = 2 };
ByteKernel byte_kernel_for(Isa isa, Precision precision, const CpuFeatures& cpu);
// byte_kernel_for(...) != kNone and bcq_bytes_uniform(w).
bool use_byte_path(const format::BcqMatrix& w, Isa isa, Precision precision, const CpuFeatures& cpu);

struct BcqBytesPacked {
  int64_t n = 0, k = 0, g = 0;
  int q = 0;
  int64_t tiles = 0;  // ceil(n / 16)
  int64_t groups = 0;  // k / g
  // [tile][k/4][64]: byte 4·row + j of quad d = the code of (16·tile + row, 4·d + j). q <= 4
  // (the int8 path's copy on avx2, never the byte path itself): nibbles, [tile][k/4][32], byte b
  // holding quad bytes b (low nibble) and b + 32 (high). The AVX-512 kernel reads bytes only
  // (q >= 5).
  AlignedBuffer codes;
  std::vector<float> scales;  // [tile][group][32]: A of the 16 rows, then B
  // The fp16 α_0 and z per (row, group), [n][groups]: for unpack only, never streamed.
  std::vector<uint16_t> alpha0, zero;

  uint8_t code(int64_t r, int64_t c) const;
  int64_t bytes() const;  // memory held = bytes streamed per forward pass
};

// Precondition: bcq_bytes_uniform(w).
BcqBytesPacked pack_bcq_bytes(const format::BcqMatrix& w);
// The canonical matrix back (bit-exact round trip of pack_bcq_bytes: planes from the codes,
// α_i = α_0·2^i and z recovered as fp16).
format::BcqMatrix unpack_bcq_bytes(const BcqBytesPacked& p);

// The scalar spec. y[m, n], stride n; any m >= 1.
void bcq_bytes_gemm_ref(const BcqBytesPacked& w, const QuantizedActs& xa, float* y);
// Preconditions: the CPU has AVX-512 F/BW/VNNI (avx512) or AVX2 + FMA (avx2).
// Precondition: w.q >= 5 (byte codes).
void bcq_bytes_gemm_avx512(const BcqBytesPacked& w, const QuantizedActs& xa, float* y, ThreadPool& pool);
void bcq_bytes_gemm_avx2(const BcqBytesPacked& w, const QuantizedActs& xa, float* y, ThreadPool& pool);

// Quantizes x (m rows, stride k) and runs the given kernel (kNone: the scalar spec).
void bcq_bytes_gemm(const BcqBytesPacked& w, const float* x, int64_t m, float* y, ThreadPool& pool, ByteKernel kernel);

}  // namespace lutq::kernels
