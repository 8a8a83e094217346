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
// or, with compressed scales (format/scale_codes.h; the file then has format version 2),
//   metadata  lutq.bcq.N.scale_bits     int, 4..8
//   tensors   N.bcq_alpha_code   I8,  dims {packed bytes of n_sets·q codes}
//             N.bcq_alpha_super  F16, dims {q, lines}  (lines: n per-OC, k per-IC)
//             N.bcq_offset_code  I8,  dims {packed bytes of n_sets codes}, only with has_offset
//             N.bcq_offset_range F16, dims {2, lines}, only with has_offset
//   instead of N.bcq_alpha / N.bcq_offset; the reader decodes them into the canonical fp16 scales.
// Uniform scales (format::has_uniform_scales: α_i = α_0·2^i, or equal codes under super scales
// S_i = S_0·2^i; the file then has format version 3) are stored once per scale set and line:
//   metadata  lutq.bcq.N.uniform  uint32 1
//   tensors   N.bcq_alpha dims {1, ...} (or N.bcq_alpha_code of n_sets codes, N.bcq_alpha_super
//             dims {1, lines}); the reader derives planes 1..q-1.
// An LLM.int8() / int8 layer named N (kernels/int8/int8_gemm.h) is
//   metadata  lutq.int8.N           int64 array [n, k]
//             lutq.int8.N.threshold float32, the outlier threshold (+inf: plain int8)
//   tensors   N.int8_q      I8,  dims {k, n}, codes in [-127, 127]
//             N.int8_scale  F32, dims {n}, per-row scales (finite, >= 0)
//             N.int8_fp16   F16, dims {k, n}, the weights for the outlier columns (finite
//                           threshold only)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "io/checkpoint.h"
#include "io/gguf_writer.h"

namespace lutq::lutqfile {

// Bumped on any change an older reader would misread; readers reject newer versions. A file is
// written as version 1 unless it holds a BCQ entry with compressed scales (version 2) or with
// uniform scales (version 3).
constexpr uint32_t kFormatVersion = 3;
constexpr uint32_t kFormatVersionPlain = 1;
constexpr uint32_t kFormatVersionCodes = 2;
constexpr uint32_t kFormatVersionUniform = 3;
constexpr std::string_view kVersionKey = "lutq.format_version";
constexpr std::string_view kBcqKeyPrefix = "lutq.bcq.";
constexpr std::string_view kInt8KeyPrefix = "lutq.int8.";

// What the file records about one BCQ matrix besides its buffers.
struct BcqEntry {
  int64_t n = 0;
  int64_t k = 0;
  format::BcqConfig cfg;
  int scale_bits = 0;        // 0: fp16 scales; 4..8: compressed scales
  bool uniform = false;      // scales stored once per set (format::has_uniform_scales)
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

// Reads the scales of BCQ matrix `name` (N.bcq_alpha, and N.bcq_offset when w.cfg.has_offset)
// into w, whose n, k and cfg are already set (format::make_empty). Errors name the file and tensor.
Status read_scales(const io::Checkpoint& ckpt, std::string_view name, format::BcqMatrix& w);

// Reads the F16 tensor `tname` of exactly the given ggml dims into out (resized to it).
Status read_f16(const io::Checkpoint& ckpt, const std::string& tname, const std::vector<int64_t>& dims,
                std::vector<uint16_t>& out);

// Adds BCQ matrix `name`'s lutq.bcq.N key (its shape and configuration) alone.
Status add_bcq_key(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w);

// Adds BCQ matrix `name`'s lutq.bcq.N key and its fp16 scale tensors, not its bits (a scale
// adapter, lutqfile/adapter.h, holds just these; compressed scales are written as fp16 here).
Status add_scales(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w);

// Adds BCQ matrix `name` (validated first) with its metadata to a file being written. A matrix
// with compressed scales (w.codes.bits > 0, whose decoding must equal w.alpha/w.offset bit for
// bit) is stored in that form, and the writer's lutq.format_version, when already added, becomes 2.
Status add_bcq(io::GgufWriter& out, const std::string& name, const format::BcqMatrix& w, std::string_view method,
               double rel_error);

// One int8 layer as stored (plain data; kernels::int8_from_codes makes it runnable).
struct Int8Entry {
  int64_t n = 0;
  int64_t k = 0;
  float threshold = 6.0f;       // +inf: plain int8
  std::vector<int8_t> q;        // [n][k]
  std::vector<float> scale;     // [n]
  std::vector<uint16_t> fp16;   // [n][k] with a finite threshold, else empty
};

// Reads int8 layer `name`, nullopt when the file has none by that name. Errors (kCorrupt, naming
// the file and tensor): a malformed key, tensors of the wrong type or shape, codes outside
// [-127, 127], scales that are negative or not finite, a missing or non-finite fp16 copy.
Result<std::optional<Int8Entry>> read_int8(const io::Checkpoint& ckpt, std::string_view name);

// Adds int8 layer `name` (checked as read_int8 checks) to a file being written.
Status add_int8(io::GgufWriter& out, const std::string& name, const Int8Entry& e);

// Whether the checkpoint holds weight `name` in any form (a tensor, a BCQ, int8 or QMoE entry).
bool has_weight(const io::Checkpoint& ckpt, std::string_view name);

// The logical [n, k] of weight `name` as ggml dims {k, n} (dense tensors: their dims), or
// nullopt when absent (or its entry is malformed; the entry's reader names the problem).
std::optional<std::vector<int64_t>> weight_dims(const io::Checkpoint& ckpt, std::string_view name);

// The name of expert `expert`'s matrix of the 3-D MoE tensor `tensor` (docs/format.md, "Experts
// in the lutq file"): "blk.L.ffn_up_exps.weight", 3 -> "blk.L.ffn_up_exps.3.weight". Its entry
// (BCQ, int8, QMoE) replaces the expert's slice of the 3-D tensor.
std::string expert_matrix_name(std::string_view tensor, int64_t expert);

}  // namespace lutq::lutqfile
