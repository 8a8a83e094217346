// Compressed scales in the per-OC layouts of the SIMD LUT backends (avx2, avx512): a matrix whose
// scales are b-bit codes (format/scale_codes.h) keeps them as codes in memory too, so the
// kernels stream q + 8q/g bits per weight instead of q + 16q/g, and decode each α on the fly:
//
//   α = fp16(fp32(c · step)),  step = format::alpha_step(S, b)  (one fp32 per row and plane)
//
// which is decode_alpha(S, c, b) bit for bit (proved in docs/format.md, tested for every case),
// so the kernels still agree with the scalar reference exactly. Both backends' tiles hold 32
// rows; in a unit the fp16 alphas (q x 64 bytes) are replaced by q x 32 one-byte codes in 64-byte
// blocks of two planes, and each tile opens with its steps [q][32 rows] fp32. In the block of
// planes 2p, 2p+1, dword j (0..15) holds the codes of
//   byte 0: plane 2p row j,  byte 1: plane 2p row j+16,  byte 2: plane 2p+1 row j,  byte 3: plane 2p+1 row j+16
// so a kernel widens a plane's codes to 32-bit lanes with one shift and one mask per 16 rows
// (no byte shuffles: those compete with the table lookups for the shuffle port). Offsets stay
// fp16 (their decoding has no such exact fp32 form). Per-IC layouts keep codes [block][q][k]
// beside fp32 steps [q][k] (IcScales) and decode them where they scale the activations.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "format/bcq_matrix.h"

namespace lutq::kernels {

constexpr int64_t kCodedTileRows = 32;

// fp16(v) as an fp32 value, for 0 <= v < 65520, by the magic-constant rounding the kernels use
// (integer and fp32 adds only: no fp16 conversion instructions, which compete with the table
// lookups for the shuffle port). With E = v's exponent field, C = 2^(max(E, 113) − 127 + 13):
// v + C falls in C's binade, whose spacing is v's fp16 spacing (2^−24 below 2^−14), so the fp32
// add rounds v to the fp16 grid (to nearest, ties to even) and subtracting C is exact.
inline float round_to_fp16_grid(float v) {
  const uint32_t e = std::bit_cast<uint32_t>(v) & 0x7F800000u;
  const float c = std::bit_cast<float>((e > (113u << 23) ? e : (113u << 23)) + (13u << 23));
  return (v + c) - c;
}

// Bytes of one unit's scales: ceil(q/2) blocks of 64 bytes (coded), or q x 32 fp16.
constexpr int64_t unit_alpha_bytes(int q, bool coded) { return coded ? (32 * q + 63) / 64 * 64 : 64 * q; }

// Bytes of the steps at the start of a tile (coded only): q x 32 fp32.
constexpr int64_t tile_step_bytes(int q, bool coded) { return coded ? 128 * q : 0; }

// Whether a backend layout keeps w's scales as codes, where that makes it smaller. Per-OC: not
// at q = 1, whose padded codes take the fp16 alphas' 64 bytes, nor for a row of very few
// groups, where the tile's steps cost more than the codes save. Per-IC (one byte per scale
// instead of two, plus fp32 steps per column and plane): with more than 4 row blocks.
inline bool keeps_codes(const format::BcqMatrix& w) {
  if (w.codes.bits == 0) return false;
  if (w.cfg.orientation == format::Orientation::kPerIC) return w.n / w.cfg.g > 4;
  const int q = w.cfg.q;
  return (unit_alpha_bytes(q, false) - unit_alpha_bytes(q, true)) * (w.k / w.cfg.g) > tile_step_bytes(q, true);
}

// Per-IC scales of the SIMD layouts, placed after the tiles (byte `at`): fp16 alphas
// [blocks][q][k], or (coded) one-byte codes [blocks][q][k] and then the steps [q][k] fp32 (the
// step of column c, plane i: alpha_step of line c); then fp16 offsets [blocks][k]. Each part
// starts on 64 bytes.
struct IcScales {
  int64_t alpha_at = 0;
  int64_t steps_at = 0;  // coded only
  int64_t offset_at = 0;
  int64_t end = 0;
};
IcScales ic_scales_at(const format::BcqMatrix& w, bool coded, int64_t at);
void write_ic_scales(const format::BcqMatrix& w, bool coded, const IcScales& s, uint8_t* d);
// Back into w (shaped by make_empty; coded: w.codes sized by the caller): the codes into
// w.codes.alpha_code (format::decode_scales then gives alpha) or the fp16 alphas; the offsets.
void read_ic_scales(const uint8_t* d, bool coded, const IcScales& s, format::BcqMatrix& w);

// The unit geometry of a 32-row tile that the AVX2 and AVX-512 layouts share (their Layout
// structs derive from it): where a unit, its alphas and offsets, and a coded tile's steps sit.
struct TileUnits {
  int q = 0;
  bool coded = false;       // scales kept as one-byte codes (per-OC in the units, per-IC in IcScales)
  bool round_alpha = true;  // coded: round code·step to fp16 (false where PackedMatrix::exact_steps)
  // Per-OC uniform scales (PackedMatrix::uniform, avx2 only): a unit keeps the 32 fp16 α_0 alone
  // (64 bytes, never coded: α_i = α_0·2^i exactly).
  bool uniform = false;
  int64_t plane_bytes = 0;  // bits of one plane in one unit
  int64_t unit_bytes = 0;   // per-OC: q planes + alphas (unit_alpha_bytes) + (32 fp16 offsets); per-IC: q planes
  int64_t head_bytes = 0;   // coded: the tile's steps [q][32] fp32 before its units; else 0

  // Per-OC: byte offset, inside a unit, of the alpha of plane i (32 fp16; coded: its planes'
  // 64-byte code block, code_at) and of the offsets.
  // Uniform: every plane's entry is α_0's.
  int64_t alpha_in_unit(int i) const { return q * plane_bytes + (uniform ? 0 : coded ? 64 * (i / 2) : 64 * i); }
  int64_t offset_in_unit() const { return q * plane_bytes + (uniform ? 64 : unit_alpha_bytes(q, coded)); }
  // Unit u of the tile at tp.
  const uint8_t* unit_at(const uint8_t* tp, int64_t u) const { return tp + head_bytes + u * unit_bytes; }
  // Coded: the steps [q][32] of the tile whose unit u starts at up (they open the tile).
  const float* tile_steps(const uint8_t* up, int64_t u) const {
    return reinterpret_cast<const float*>(up - u * unit_bytes - head_bytes);
  }
};

// The steps of tile `tile`: steps[i*32 + rt] = alpha_step of row 32·tile + rt, plane i (0 past n).
void write_tile_steps(const format::BcqMatrix& w, int64_t tile, float* steps);

// Byte of the code of plane i, tile row rt (0..31) in a unit's code blocks.
constexpr int64_t code_at(int i, int64_t rt) { return 64 * (i / 2) + 4 * (rt % 16) + 2 * (i % 2) + rt / 16; }

// The per-OC codes of row r, group u into a unit's code blocks (code_at).
void write_unit_codes(const format::BcqMatrix& w, int64_t r, int64_t u, uint8_t* a);

// Whether every super scale of w is short (format::is_short_super): code·step is then the decoded
// α exactly, with no rounding to do.
bool all_supers_short(const format::BcqMatrix& w);

// What a coded layout keeps beside it in PackedMatrix::source: w.codes without alpha_code
// (which lives in the layout), so unpack can give the matrix back whole.
format::ScaleCodes codes_beside_layout(const format::BcqMatrix& w);

// What a uniform layout (TileUnits::uniform) keeps beside it in PackedMatrix::source when w has
// codes: alpha_code one per set (plane 0's) where every set's q codes are equal (RTN's), all of
// them otherwise; uniform_codes_back gives the canonical codes[set*q + i] again.
format::ScaleCodes uniform_codes_beside(const format::BcqMatrix& w);
std::vector<uint8_t> uniform_codes_back(const format::ScaleCodes& beside, int q, size_t sets);

// Unpack: the codes of row r, group u back from a unit's code block into w.codes.alpha_code
// (sized by the caller); format::decode_scales then gives alpha back from them.
void read_unit_codes(const uint8_t* a, int64_t r, int64_t u, format::BcqMatrix& w);

}  // namespace lutq::kernels
