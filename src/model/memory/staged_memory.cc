#include "model/memory/staged_memory.h"

#include <algorithm>
#include <cmath>

namespace lutq::model {

void for_positions(ThreadPool& pool, int64_t n, int64_t cost_per_position, FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  if (pool.size() == 1 || n * cost_per_position < kMinParallelFlops) {
    fn(0, n);
    return;
  }
  pool.parallel_for(n, 1, fn);
}

Status for_each_sequence(std::span<const BatchRow> batch,
                         FunctionRef<Status(int32_t, int64_t, const std::vector<int64_t>&)> fn) {
  const auto m = static_cast<int64_t>(batch.size());
  std::vector<bool> done(static_cast<size_t>(m), false);
  std::vector<int64_t> rows;
  for (int64_t first = 0; first < m; ++first) {
    if (done[static_cast<size_t>(first)]) continue;
    const int32_t seq = batch[static_cast<size_t>(first)].seq;
    rows.clear();
    int64_t n = 0;
    for (int64_t t = first; t < m; ++t) {
      if (batch[static_cast<size_t>(t)].seq != seq) continue;
      done[static_cast<size_t>(t)] = true;
      rows.push_back(t);
      n = std::max(n, batch[static_cast<size_t>(t)].pos + 1);
    }
    if (Status st = fn(seq, n, rows); !st) return st;
  }
  return Status::ok();
}

Status StagedMemory::attend(int64_t layer, const AttentionRows& in, float* out, OpIsa ops, ThreadPool& pool) {
  if (Status st = store(layer, in, ops, pool); !st) return st;
  const MemoryShape& s = shape();
  const int64_t hd = s.head_dim;
  const int64_t kvd = kv_dim();
  const int64_t q_stride = s.n_head * hd;
  const int64_t n_rep = s.n_head / s.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  return for_each_sequence(in.rows, [&](int32_t seq, int64_t n, const std::vector<int64_t>& rows) -> Status {
    if (k_.size() < static_cast<size_t>(n * kvd)) {
      k_.resize(static_cast<size_t>(n * kvd));
      v_.resize(k_.size());
    }
    if (Status st = load(layer, seq, n, in, k_.data(), v_.data(), ops, pool); !st) return st;
    const auto items = static_cast<int64_t>(rows.size()) * s.n_head;
    const auto body = [&](int index, int count) {
      std::vector<float> scores(static_cast<size_t>(n));
      for (int64_t item = index; item < items; item += count) {
        const int64_t t = rows[static_cast<size_t>(item / s.n_head)];
        const int64_t h = item % s.n_head;
        const int64_t kv_off = (h / n_rep) * hd;
        attend_head(in.q + t * q_stride + h * hd, k_.data() + kv_off, v_.data() + kv_off,
                    in.rows[static_cast<size_t>(t)].pos + 1, kvd, hd, scale, scores.data(),
                    out + t * q_stride + h * hd, ops.avx2);
      }
    };
    if (pool.size() == 1 || items * n * hd * 4 < kMinParallelFlops) {
      body(0, 1);
    } else {
      pool.run(body);
    }
    return Status::ok();
  });
}

}  // namespace lutq::model
