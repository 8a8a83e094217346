// Compressed scales: the q scales α and the offset z of every BCQ group stored as b-bit codes
// under fp16 values shared by a whole line (docs/format.md, "Compressed scales").
//
// A line is one row (per-OC groups) or one column (per-IC groups): the groups of a line share
//   - per plane i, one fp16 super scale S_i ≥ 0; a group's α_i ≥ 0 is the code c ∈ [0, 2^b − 1]
//       α_i = fp16(S_i · c / (2^b − 1))
//   - with an offset, the fp16 range [zmin, zmax]; a group's z is the code c ∈ [0, 2^b − 1]
//       z = fp16(zmin + (zmax − zmin) · c / (2^b − 1))
// Both are the exact values rounded once to fp16 (decode_offset computes in double; decode_alpha
// in fp32, which gives the same value, see alpha_step), so the writer, the reader, the kernels
// and the quantizers agree bit for bit. α ≥ 0 costs
// nothing: α·B = (−α)·(−B), so encode() flips a plane's bits in a group whose α is negative.
// b is 4..8 (kMinScaleBits..kMaxScaleBits). Codes are packed LSB-first into bytes
// (pack_codes): code j occupies bits [j·b, (j+1)·b) of the stream, bit t of the stream is bit
// t%8 of byte t/8; the bits past the last code are 0.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"

namespace lutq::format {

constexpr int kMinScaleBits = 4;
constexpr int kMaxScaleBits = 8;

// The largest code of b bits, 2^b − 1.
constexpr int max_code(int bits) { return (1 << bits) - 1; }

// Checks a scale bit count: 4..8 (the message names the value).
Status validate_scale_bits(int bits);

// Lines of the matrix (rows per-OC, columns per-IC) and the line of scale set `set`.
int64_t num_lines(const BcqMatrix& w);
int64_t line_of_set(const BcqMatrix& w, int64_t set);

// The decoding rule (fp16 bit patterns in and out).
uint16_t decode_alpha(uint16_t super, int code, int bits);
uint16_t decode_offset(uint16_t zmin, uint16_t zmax, int code, int bits);

// The same α in fp32 arithmetic, as the SIMD kernels compute it from the codes:
//   step = fp32(S / (2^b − 1)),   α = fp16(fp32(c · step))
// equals fp16(S·c/(2^b − 1)) rounded once from the exact value, for every finite fp16 S ≥ 0, b in
// 4..8 and code c (decode_alpha computes it so). Why: the exact
// S·c/(2^b − 1) is never an fp16 rounding midpoint and lies at least 2^−20 (relative) from every
// one (docs/format.md), while the two fp32 roundings move it by at most 2·2^−24. Checked for
// every (S, b, c) by scale_codes_test.
float alpha_step(uint16_t super, int bits);

// Super scales with a short step: S = m·2^e·(2^b − 1) with m < 2^(11−b) and e ≥ −24, so every
// c·S/(2^b − 1) = c·m·2^e has at most 11 significant bits on fp16's grid: the decoding rounds
// nothing, and a kernel may take α = c·step (step = alpha_step(S, b), exact) without rounding.
// short_super gives the smallest such S >= at_least (0 for at_least <= 0; at most the largest
// such S below the fp16 maximum). The encoders choose these: less than 2^(b−9) relative above the
// line's largest α (25 % of the code range at 8 bits, 6.25 % at 6, 1.6 % at 4).
uint16_t short_super(double at_least, int bits);
bool is_short_super(uint16_t super, int bits);

// round((value − lo)·(2^b − 1)/(hi − lo)) clamped to [0, 2^b − 1] (0 when hi <= lo): the rounded
// code of a value on the line's scale (lo = 0, hi = S) or offset range; the quantizers start
// their code search here.
int nearest_code(double value, double lo, double hi, int bits);

// Compresses w's scales with b-bit codes: α made ≥ 0 by flipping bits, S_i = short_super of the
// line's largest |α_i|, [zmin, zmax] = the line's smallest and largest offset, each code the
// rounded one. Returns the matrix with the codes set and alpha/offset replaced by their decoding
// (bits flipped where α was negative; the grid values change by the codes' rounding only).
Result<BcqMatrix> encode_scales(const BcqMatrix& w, int bits);

// Checks w.codes against w's shape: bit count, buffer sizes, codes in range, super scales finite
// and ≥ 0, offset ranges finite with zmin ≤ zmax. w.codes.bits == 0 with empty buffers is valid.
Status validate_codes(const BcqMatrix& w);

// Validates w.codes and replaces w.alpha / w.offset by their decoding.
Status decode_scales(BcqMatrix& w);

// Whether w.alpha / w.offset equal the decoding of w.codes bit for bit (true without codes).
bool scales_match_codes(const BcqMatrix& w);

// Everything the kernels assume of a matrix: validate(w) and, where it has codes, validate_codes
// and scales_match_codes. For a matrix built in memory, once before BcqLinear packs it (a matrix
// read from a lutq file is checked by lutqfile::read_bcq, whose decoding makes its scales match).
Status validate_with_codes(const BcqMatrix& w);

// Bytes of `count` packed codes of `bits` bits.
int64_t packed_size(int64_t count, int bits);
std::vector<uint8_t> pack_codes(std::span<const uint8_t> codes, int bits);
// Unpacks `count` codes; errors when bytes is not packed_size(count, bits) long or a padding bit
// past the last code is set.
Status unpack_codes(std::span<const uint8_t> bytes, int64_t count, int bits, std::vector<uint8_t>& out);

}  // namespace lutq::format
