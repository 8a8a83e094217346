// A scale adapter (issue 14: PEQA / AlphaTuning): new scales α (and offsets z) for some BCQ
// matrices of one base lutq file, whose binary codes it leaves as they are. `lutq tune
// --adapter-out` writes one; `--adapter FILE` on run, chat, perplexity, bench and serve applies it
// at load. A GGUF v3 file (docs/format.md, "Scale adapters"):
//   lutq.adapter.format_version  uint32, 1
//   lutq.adapter.base            string, the base file's name (informational)
//   lutq.adapter.description     string, what made it (optional)
//   per adapted matrix N:
//     lutq.bcq.N                 int64 array [n, k, q, g, orientation, has_offset] (as in a lutq file)
//     lutq.adapter.N.codes       string, 16 hex digits: codes_hash() of the base's bit-planes of N
//     N.bcq_alpha, N.bcq_offset  the scales, as a lutq file stores them (no N.bcq_bits)
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

// A 64-bit hash of a matrix's shape, configuration and bit-planes (not its scales).
uint64_t codes_hash(const format::BcqMatrix& w);

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

  // Replaces w's scales with the adapter's for `name`; returns false (w untouched) when the adapter
  // has none for it. Errors (naming the adapter and matrix): another shape, configuration or codes.
  Result<bool> apply(std::string_view name, format::BcqMatrix& w) const;

 private:
  struct Entry {
    format::BcqMatrix scales;  // n, k, cfg, alpha, offset; bits empty
    uint64_t codes = 0;        // codes_hash of the base matrix
  };
  std::string path_, base_, description_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// One tuned matrix: its name and the matrix with the base's codes and the new scales.
struct AdaptedMatrix {
  std::string name;
  const format::BcqMatrix* matrix = nullptr;
};

// Writes an adapter holding the scales of `matrices` (each validated), recording each one's codes
// hash; written beside `path` and renamed when complete.
Status write_adapter(const std::string& path, const std::string& base, const std::string& description,
                     const std::vector<AdaptedMatrix>& matrices);

}  // namespace lutq::lutqfile
