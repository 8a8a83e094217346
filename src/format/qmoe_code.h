// Ternary matrices and the QMoE dictionary code (after QMoE, arXiv 2310.16795): the ternary
// symbols {−1, 0, +1} of a matrix, row-major, are cut into variable-length runs of at most
// kQmoeMaxRun symbols, each run one 16-bit codeword of a dictionary of up to 2^16 entries built
// from the symbol statistics of the data. Decoding is a table lookup: codeword -> (length,
// mask of +1 positions, mask of −1 positions). Byte layout and bits/parameter: docs/format.md,
// "QMoE codes".
//
//   W[r, c] ≈ scale[r] · t[r, c],   t ∈ {−1, 0, +1},   one fp16 scale per output row
//
// Runs never cross rows, and row_offset[r] (in codewords) marks where row r starts, so rows
// decode independently (row-parallel kernels) and every row decodes to exactly k symbols.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq::format {

constexpr int kQmoeMaxRun = 32;  // symbols per codeword, at most
constexpr int64_t kQmoeMaxEntries = int64_t{1} << 16;  // codewords are uint16

// A ternary matrix: t[r*k + c] in {−1, 0, +1}, scale[r] fp16 (finite).
struct TernaryMatrix {
  int64_t n = 0;
  int64_t k = 0;
  std::vector<int8_t> t;
  std::vector<uint16_t> scale;

  double zero_fraction() const;
};

// Shape, buffer sizes, symbols in {−1, 0, +1}, finite scales.
Status validate(const TernaryMatrix& w);
// W[n*k] in fp32: scale (fp16 widened) times the symbol, exact.
std::vector<float> dequantize(const TernaryMatrix& w);

// The dictionary: entry e covers len[e] symbols; bit j of pos[e] (neg[e]) set means symbol j of
// the run is +1 (−1), neither means 0. The three single-symbol entries are always present (any
// ternary stream can be coded).
struct QmoeDictionary {
  std::vector<uint8_t> len;
  std::vector<uint32_t> pos;
  std::vector<uint32_t> neg;

  int64_t size() const { return static_cast<int64_t>(len.size()); }
  int64_t storage_bytes() const { return size() * 9; }
};

// 1..2^16 entries, equal array sizes, len in 1..kQmoeMaxRun, pos & neg == 0, no bit at or
// past len, no duplicate entry, and the three single-symbol entries present.
Status validate(const QmoeDictionary& d);

// One coded matrix. The dictionary is shared by every matrix coded with it (one per file or
// layer group).
struct QmoeMatrix {
  int64_t n = 0;
  int64_t k = 0;
  std::vector<uint16_t> scale;  // [n] fp16
  std::vector<uint32_t> row_offset;  // [n+1], row r's codewords are codes[row_offset[r] .. row_offset[r+1])
  std::vector<uint16_t> codes;
  std::shared_ptr<const QmoeDictionary> dict;

  // Bits per weight of codes + offsets + scales (the shared dictionary not counted).
  double bits_per_weight() const;
  // Bits per weight of the codes alone.
  double code_bits_per_weight() const;
};

// Everything a kernel relies on: the dictionary (validate above), n, k >= 1, sizes, finite
// scales, row_offset[0] == 0, monotone, row_offset[n] == codes.size(), every codeword inside
// the dictionary and every row decoding to exactly k symbols. Messages say which row/codeword.
Status validate(const QmoeMatrix& w);

enum class DictionaryMethod : uint8_t { kTunstall = 0, kPairMerge = 1 };

struct DictionaryOptions {
  DictionaryMethod method = DictionaryMethod::kTunstall;
  int64_t max_entries = kQmoeMaxEntries;  // 3 + kQmoeMaxRun − 1 .. 2^16
  int rounds = 8;  // kPairMerge: merge rounds
  int64_t row_stride = 1;  // parse every row_stride-th row only (speed on whole models)
};

// Builds a dictionary from the symbol statistics of the given matrices (see qmoe_code.cc).
//   kTunstall   Tunstall's variable-to-fixed code for the measured frequencies of 0, +1 and −1:
//               starting from the three symbols, the most probable run shorter than 32 is
//               replaced by its three one-symbol extensions until the dictionary is full; the
//               zero runs 2..32 are added for row ends. It maximises the expected run length
//               (the symbols per codeword) for symbols drawn independently at those frequencies.
//   kPairMerge  the singles and zero runs, then rounds of "parse greedily, add the most frequent
//               adjacent pairs of entries as one entry".
// Both: entries unused by a final greedy parse are dropped (the singles stay) and the rest
// ordered by use, most used first.
Result<QmoeDictionary> build_dictionary(std::span<const TernaryMatrix* const> mats, const DictionaryOptions& opt);

// Codes w with the dictionary (greedy longest match, rows independent). Errors: invalid w or
// dictionary.
Result<QmoeMatrix> encode(const TernaryMatrix& w, std::shared_ptr<const QmoeDictionary> dict);

// Decodes a validated QmoeMatrix back to its ternary matrix (validates first).
Result<TernaryMatrix> decode(const QmoeMatrix& w);

// From the little-endian buffers as stored (docs/format.md, "QMoE codes"): len u8[D], pos and
// neg u32[D]; a buffer whose size is not a whole number of values, or sizes that disagree, is
// an error (kCorrupt); the result is validated.
Result<QmoeDictionary> dictionary_from_bytes(std::span<const uint8_t> len, std::span<const uint8_t> pos,
                                             std::span<const uint8_t> neg);
// scale fp16[n], row offsets u32[n+1], codes u16[...]; validated against the dictionary.
Result<QmoeMatrix> matrix_from_bytes(int64_t n, int64_t k, std::span<const uint8_t> scale,
                                     std::span<const uint8_t> row_offset, std::span<const uint8_t> codes,
                                     std::shared_ptr<const QmoeDictionary> dict);

// "576x1536 qmoe ternary (0.84 bpw, dictionary 12345 entries)".
std::string describe(const QmoeMatrix& w);

}  // namespace lutq::format
