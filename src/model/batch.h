// Batch: the rows one Model::forward call runs. Each row is one token of one sequence at one
// position, so prefill (one sequence, consecutive positions), decode (one row) and continuous
// batching (one row from each of several sequences) are the same thing, run by the same pass.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lutq::model {

enum class LogitsMode { kLast, kAll };

struct BatchRow {
  int32_t token = 0;
  int64_t pos = 0;     // position in its sequence
  int32_t seq = 0;     // sequence index in the Memory (0 .. memory.sequences()-1)
  bool logits = false; // write this row's logits
  // The scale adapter this row runs with (Model::add_adapter): 0 the model's own scales, a >= 1
  // the a-th adapter added. Rows of several adapters may share one batch.
  int32_t adapter = 0;
};

struct Batch {
  std::vector<BatchRow> rows;

  void add(int32_t token, int64_t pos, int32_t seq, bool logits, int32_t adapter = 0) {
    rows.push_back({token, pos, seq, logits, adapter});
  }

  // Tokens of one sequence at positions start_pos.. ; logits for the last row (kLast) or all rows.
  static Batch sequence(std::span<const int32_t> tokens, int64_t start_pos, int32_t seq, LogitsMode mode,
                        int32_t adapter = 0) {
    Batch b;
    b.rows.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool last = i + 1 == tokens.size();
      b.add(tokens[i], start_pos + static_cast<int64_t>(i), seq, mode == LogitsMode::kAll || last, adapter);
    }
    return b;
  }

  int64_t size() const { return static_cast<int64_t>(rows.size()); }
  int64_t logits_rows() const {
    int64_t n = 0;
    for (const BatchRow& r : rows) n += r.logits ? 1 : 0;
    return n;
  }
};

}  // namespace lutq::model
