// The token embedding table. When it doubles as a dense tied output head, or is stored in fp32,
// it is held as fp32 rows; otherwise it stays in the checkpoint's own type (Q4_K, Q6_K, F16, ...)
// and each looked-up row is dequantized on the fly: Qwen2.5-1.5B's untied table is 125 MiB as
// Q4_K instead of 890 MiB in fp32, and a lookup reads one row either way.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"

namespace lutq::model {

class Embedding {
 public:
  // Reads tensor `name` ([n_vocab][n_embd]); `want_f32` keeps fp32 rows (for a tied head).
  static Result<Embedding> load(const io::Checkpoint& ckpt, const std::string& name, bool want_f32);

  int64_t n_vocab() const { return n_vocab_; }
  int64_t n_embd() const { return n_embd_; }
  // Row `token` (0 <= token < n_vocab, checked by the caller) into out[n_embd].
  void row(int32_t token, float* out) const;
  // The fp32 table, or null when the rows are kept in the source type.
  const std::shared_ptr<const std::vector<float>>& f32() const { return f32_; }
  int64_t bytes() const;  // held in memory
  io::GgmlType type() const { return type_; }  // the rows' type as held (F32 when fp32)

 private:
  int64_t n_vocab_ = 0;
  int64_t n_embd_ = 0;
  io::GgmlType type_ = io::GgmlType::F32;
  int64_t row_bytes_ = 0;
  std::vector<uint8_t> packed_;  // [n_vocab][row_bytes_] in type_, when not fp32
  std::shared_ptr<const std::vector<float>> f32_;
};

}  // namespace lutq::model
