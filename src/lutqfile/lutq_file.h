// The lutq model file: a GGUF v3 file (so every GGUF tool can list it, and lutq's validated,
// mmap'ed GGUF reader opens it) that carries, besides the source checkpoint's metadata (model
// configuration, tokenizer, chat template) and its unquantized tensors, the BCQ matrices of the
// quantized layers in the canonical layout of docs/format.md. Layout and keys: docs/format.md,
// "The lutq model file".
//
// A BCQ matrix named N (the GGUF name the dense weight would have, e.g. blk.0.attn_q.weight) is
//   metadata  lutq.bcq.N           int64 array [n, k, q, g, orientation, has_offset]
//             lutq.bcq.N.method    string, the quantizer ("rtn", "gptq-bcq", ...), optional
//             lutq.bcq.N.rel_error float32, ‖W − Ŵ‖_F / ‖W‖_F measured when quantizing, optional
//   tensors   N.bcq_bits   I8,  dims {ceil(k/8), n, q}
//             N.bcq_alpha  F16, dims {q, k/g, n} (per-OC) or {q, k, n/g} (per-IC)
//             N.bcq_offset F16, dims {k/g, n} or {k, n/g}, only with has_offset
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "io/checkpoint.h"
#include "io/gguf_writer.h"

namespace lutq::lutqfile {

// Bumped on any change a version-1 reader would misread; readers reject newer versions.
constexpr uint32_t kFormatVersion = 1;
constexpr std::string_view kVersionKey = "lutq.format_version";
constexpr std::string_view kBcqKeyPrefix = "lutq.bcq.";

// What the file records about one BCQ matrix besides its buffers.
struct BcqEntry {
  int64_t n = 0;
  int64_t k = 0;
  format::BcqConfig cfg;
  std::string method;        // empty when not recorded
  double rel_error = -1.0;   // < 0 when not recorded
};

// Whether the checkpoint is a lutq file (has lutq.format_version); errors for a version this
// build cannot read or a malformed key.
Result<bool> is_lutq_file(const io::Checkpoint& ckpt);

// The entry for BCQ matrix `name`, nullopt when the file has none by that name. Errors: a
// malformed lutq.bcq.* key.
Result<std::optional<BcqEntry>> find_bcq(const io::Checkpoint& ckpt, std::string_view name);

// Reads and validates BCQ matrix `name` (format::validate); errors name the file and tensor.
Result<format::BcqMatrix> read_bcq(const io::Checkpoint& ckpt, std::string_view name);

// Adds BCQ matrix `name` (validated first) with its metadata to a file being written.
Status add_bcq(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w, std::string_view method,
               double rel_error);

// Whether the checkpoint holds weight `name` in either form (a tensor, or a BCQ matrix).
bool has_weight(const io::Checkpoint& ckpt, std::string_view name);

// The logical [n, k] of weight `name` as ggml dims {k, n} (dense tensors: their dims), or
// nullopt when absent.
std::optional<std::vector<int64_t>> weight_dims(const io::Checkpoint& ckpt, std::string_view name);

}  // namespace lutq::lutqfile
