// A scale adapter (issue 14: PEQA / AlphaTuning): new scales α (and offsets z) for some BCQ
// matrices of one base lutq file, whose binary codes it leaves as they are. `lutq tune
// --adapter-out` writes one; `--adapter FILE` on run, chat, perplexity, bench and serve applies it
// at load. A GGUF v3 file (docs/format.md, "Scale adapters"):
//   lutq.adapter.format_version  uint32, 1
//   lutq.adapter.base            string, the base file's name (informational)
//   lutq.adapter.description     string, what made it (optional)
//   per adapted matrix N:
//     lutq.bcq.N                 int64 array [n, k, q, g, orientation, has_offset] (as in a lutq file)
//     lutq.adapter.N.kind        string, "full" (default when absent) or "row"
//     lutq.adapter.N.codes       string, 16 hex digits: full: codes_hash() of the base's N;
//                                row: base_hash() (its codes and scales)
//     full: N.bcq_alpha, N.bcq_offset   the new scales, as a lutq file stores them (no N.bcq_bits)
//     row:  N.adapter_row_alpha  F16 dims {q, lines}: α[s·q + i] becomes α[s·q + i]·m[line(s)·q + i]
//           (rounded to fp16), lines = rows (per-OC) or columns (per-IC); offsets unchanged
// An adapter applies only to the codes it was trained on: a matrix of another shape,
// configuration or codes is refused with its name, and so is an adapter naming a matrix the
// model does not hold in BCQ form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "io/checkpoint.h"

namespace lutq::lutqfile {

constexpr uint32_t kAdapterFormatVersion = 1;
constexpr std::string_view kAdapterVersionKey = "lutq.adapter.format_version";

// What an adapter holds per matrix: every scale and offset (full), or one multiplier per scale
// line and plane (row: AlphaTuning's per-row scales over a grouped matrix, q·16/k bits per weight).
enum class AdapterKind { kFull, kRow };

// A 64-bit hash of a matrix's shape, configuration and bit-planes (not its scales).
uint64_t codes_hash(const format::BcqMatrix& w);
// The same over the scales and offsets too (what a row adapter multiplies).
uint64_t base_hash(const format::BcqMatrix& w);

// Scale lines: the scale sets at one position of the ungrouped dimension, row r (per-OC) or
// column c (per-IC).
inline int64_t scale_lines(const format::BcqMatrix& w) {
  return w.cfg.orientation == format::Orientation::kPerOC ? w.n : w.k;
}
inline int64_t scale_line(const format::BcqMatrix& w, int64_t set) {
  return w.cfg.orientation == format::Orientation::kPerOC ? set / (w.k / w.cfg.g) : set % w.k;
}
// α[s·q + i] = fp16(fp32(α[s·q + i]) · fp32(mult[line(s)·q + i])): what a row adapter does. mult
// holds scale_lines(w)·q fp16 values. Error: a product fp16 cannot hold.
Status multiply_scales(format::BcqMatrix& w, const std::vector<uint16_t>& mult);

class Adapter {
 public:
  // Reads and checks an adapter file: errors for a model file given as an adapter, a missing or
  // newer version, no scales, malformed keys, tensors of the wrong type or size, non-finite scales.
  static Result<std::shared_ptr<const Adapter>> read(const std::string& path);
  // The same from an open checkpoint (the scales are copied: it need not outlive the adapter).
  static Result<std::shared_ptr<const Adapter>> from_checkpoint(const io::Checkpoint& ckpt);

  const std::string& path() const { return path_; }
  const std::string& base() const { return base_; }
  const std::string& description() const { return description_; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> names() const;
  // Bytes of the scales it holds (what it adds to a base model in memory).
  int64_t scale_bytes() const;

  // Replaces (full) or multiplies (row) w's scales with the adapter's for `name`; returns false (w
  // untouched) when the adapter has none for it. Errors (naming the adapter and matrix): another
  // shape, configuration, codes or (row) base scales.
  Result<bool> apply(std::string_view name, format::BcqMatrix& w) const;

 private:
  struct Entry {
    AdapterKind kind = AdapterKind::kFull;
    format::BcqMatrix scales;     // n, k, cfg; full: alpha and offset; bits empty
    std::vector<uint16_t> mult;   // row: [lines][q]
    uint64_t base = 0;            // full: codes_hash, row: base_hash of the base matrix
  };
  static Result<Entry> read_entry(const io::Checkpoint& ckpt, const std::string& name, const format::BcqMatrix& shape);
  std::string path_, base_, description_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// One tuned matrix. Full: `matrix` has the base's codes and the new scales. Row: `matrix` is the
// base (codes and scales) and `row_mult` its multipliers ([lines][q] fp16).
struct AdaptedMatrix {
  std::string name;
  const format::BcqMatrix* matrix = nullptr;
  const std::vector<uint16_t>* row_mult = nullptr;
};

// Writes an adapter holding `matrices` (each validated), recording each one's base hash; written
// beside `path` and renamed when complete.
Status write_adapter(const std::string& path, const std::string& base, const std::string& description,
                     const std::vector<AdaptedMatrix>& matrices);

}  // namespace lutq::lutqfile
