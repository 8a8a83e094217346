// The canonical, ISA-neutral BCQ weight matrix: what the quantizers produce, what goes to disk,
// and what every kernel backend repacks from. Layout and bit order: docs/format.md.
//
//   W[n,k] ≈ Σ_{i<q} α_i · B_i[n,k] (+ z),   B_i ∈ {−1,+1}
//
// Per-OC orientation: groups of g consecutive weights along k inside one output row share the
// q scales α_i[n, k/g] (and the offset z[n, k/g]). Per-IC orientation (AdaDim): groups of g
// consecutive rows inside one input column share α_i[n/g, k] (and z[n/g, k]).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq::format {

enum class Orientation : uint8_t { kPerOC = 0, kPerIC = 1 };

constexpr int kMaxBits = 8;

const char* orientation_name(Orientation o);

struct BcqConfig {
  int q = 3;  // bit-planes, 1..8
  int64_t g = 128;  // group size along k (per-OC) or n (per-IC): 32, 64, 128, 256 or the full extent
  Orientation orientation = Orientation::kPerOC;
  bool has_offset = false;
};

// Compressed scales (format/scale_codes.h, docs/format.md "Compressed scales"): the stored form of
// alpha/offset when bits > 0. alpha and offset then hold the decoded values, which are what the
// reference kernels read; these codes are what the file stores, and what the per-OC SIMD layouts
// keep and decode on the fly (kernels/coded_scales.h). Empty (bits 0): the scales are plain fp16.
// A line is a row (per-OC) or a column (per-IC).
struct ScaleCodes {
  int bits = 0;  // 0: none; else 4..8 bits per code
  std::vector<uint8_t> alpha_code;     // one per alpha (same index), 0..2^bits−1
  std::vector<uint16_t> alpha_super;   // fp16 super scale S per (line, plane): [line*q + i]
  std::vector<uint8_t> offset_code;    // one per offset (has_offset only)
  std::vector<uint16_t> offset_range;  // fp16 [zmin, zmax] per line: [line*2 + {0,1}] (has_offset only)
};

struct BcqMatrix {
  int64_t n = 0;  // output features (rows)
  int64_t k = 0;  // input features (columns, the reduction)
  BcqConfig cfg;
  // Bit-planes, plane-major then row-major, each row packed along k, least significant bit first:
  // bits[(i*n + r)*row_bytes() + c/8] bit (c%8) is 1 where B_i[r,c] = +1, 0 where it is −1.
  // Padding bits past k are 0.
  std::vector<uint8_t> bits;
  // fp16 scales. Per-OC: alpha[((r*groups_k()) + c/g)*q + i]. Per-IC: alpha[((r/g)*k + c)*q + i].
  std::vector<uint16_t> alpha;
  // fp16 offsets (empty unless cfg.has_offset). Per-OC: offset[r*groups_k() + c/g].
  // Per-IC: offset[(r/g)*k + c].
  std::vector<uint16_t> offset;
  // The compressed form of alpha/offset when codes.bits > 0 (alpha/offset are then its decoding).
  ScaleCodes codes;

  int64_t row_bytes() const { return (k + 7) / 8; }
  // Number of groups along k (per-OC) or along n (per-IC).
  int64_t num_groups() const;
  // Scale sets: the number of (group, other-dimension) cells, each holding q alphas.
  int64_t num_scale_sets() const;

  bool bit(int plane, int64_t r, int64_t c) const {
    return (bits[static_cast<size_t>((plane * n + r) * row_bytes() + c / 8)] >> (c % 8)) & 1u;
  }
  // Index of the scale set of element (r, c): alpha[scale_set(r,c)*q + i], offset[scale_set(r,c)].
  int64_t scale_set(int64_t r, int64_t c) const {
    return cfg.orientation == Orientation::kPerOC ? r * (k / cfg.g) + c / cfg.g : (r / cfg.g) * k + c;
  }

  // Bits per weight of the stored form: planes + fp16 scales and offsets, or + the compressed
  // scales when codes.bits > 0 (stored_bytes()).
  double bits_per_weight() const;
  // Bytes of bits + fp16 scales + offsets: the matrix with its scales expanded to fp16 (as the
  // canonical form holds it; kernel layouts report their own size, BcqLinear::weight_bytes).
  int64_t storage_bytes() const;
  // Bytes of the stored form: storage_bytes(), or with compressed scales the bits, the packed
  // codes and the fp16 super scales and offset ranges.
  int64_t stored_bytes() const;
};

// Whether w's scales are uniform (docs/format.md, "Uniform scales"), so that the file stores one
// scale per scale set (uniform codes: RTN and the other uniform-grid fits) and derives the rest:
// q >= 2 and, with fp16 scales, every set's α_i = α_0·2^i exactly (a finite fp16, same sign);
// with compressed scales every set's q codes are equal and every line's super scales are
// S_i = S_0·2^i exactly. Scales trained afterwards (lutq tune, adapters) are not, and are stored
// in full.
bool has_uniform_scales(const BcqMatrix& w);

// The full scales of uniform storage: alpha[set*q + i] = α_0·2^i from alpha[set*q] (fp16 form),
// or, with codes, every plane's code and super scale from plane 0's (then decoded by the
// caller). Errors (kCorrupt) where a derived fp16 value would not be finite.
Status expand_uniform_alpha(std::vector<uint16_t>& alpha, int q);
Status expand_uniform_codes(ScaleCodes& codes, int q);

// Checks a configuration against a shape: q in 1..8, g in {32,64,128,256} or the full extent,
// and the grouped dimension divisible by g. The message names the offending value.
Status validate_config(const BcqConfig& cfg, int64_t n, int64_t k);

// Checks that a matrix is internally consistent (config, buffer sizes, zero padding bits).
Status validate(const BcqMatrix& w);

// Allocates a matrix of the given shape with all planes −1, scales 0 and offsets 0.
Result<BcqMatrix> make_empty(int64_t n, int64_t k, const BcqConfig& cfg);

// Reconstructs row r of W in double: out[c] = z + Σ_i (B_i ? +α_i : −α_i), fp16 widened exactly.
void dequantize_row(const BcqMatrix& w, int64_t r, double* out);

// Reconstructs W[n,k] in fp32 from the stored form (fp16 scales widened exactly):
// w = Σ_i α_i·(±1) summed in double then rounded once, plus the offset.
std::vector<float> dequantize(const BcqMatrix& w);

// Human-readable summary, e.g. "576x1536 q=3 g=128 per-OC offset (3.25 bpw)".
std::string describe(const BcqMatrix& w);

}  // namespace lutq::format
