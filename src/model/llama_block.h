// The parts of a Llama block that do not depend on where the tokens' keys and values live,
// shared by LlamaModel::forward (one sequence, m positions) and forward_batch (m sequences, one
// position each): the scratch rows of a pass, RMSNorm over rows, and the two residual halves
// after attention. Internal to src/model.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/ops.h"

namespace lutq::model {

// Scratch rows for m tokens: residual stream x, normed input h, queries, attention output,
// and the two feed-forward projections.
struct BlockBuffers {
  BlockBuffers(const ModelConfig& c, int64_t m)
      : x(rows(m, c.n_embd)), h(rows(m, c.n_embd)), q(rows(m, c.q_dim())), att(rows(m, c.q_dim())),
        gate(rows(m, c.n_ff)), up(rows(m, c.n_ff)) {}
  static size_t rows(int64_t m, int64_t width) { return static_cast<size_t>(m * width); }
  std::vector<float> x, h, q, att, gate, up;
};

// One block linear layer: role, input rows, output rows (forward() adds its observer here).
using LinearFn = FunctionRef<Status(LinearRole, const float*, float*)>;

// out[t] = rms_norm(x[t]) · w for the m rows of width e.
inline void rms_norm_rows(const float* x, const float* w, int64_t m, int64_t e, float eps, float* out) {
  for (int64_t t = 0; t < m; ++t) rms_norm(x + t * e, w, e, eps, out + t * e);
}

// x += attn_output(att), then the feed-forward half: h = ffn_norm(x);
// x += ffn_down(silu(ffn_gate(h)) · ffn_up(h)).
inline Status attention_and_ffn_residuals(const ModelConfig& c, const LlamaLayer& layer, int64_t m, BlockBuffers& b,
                                          LinearFn linear) {
  const int64_t e = c.n_embd;
  if (Status s = linear(LinearRole::kAttnOutput, b.att.data(), b.h.data()); !s) return s;
  add_inplace(b.x.data(), b.h.data(), m * e);
  rms_norm_rows(b.x.data(), layer.ffn_norm.data(), m, e, c.rms_eps, b.h.data());
  if (Status s = linear(LinearRole::kFfnGate, b.h.data(), b.gate.data()); !s) return s;
  if (Status s = linear(LinearRole::kFfnUp, b.h.data(), b.up.data()); !s) return s;
  swiglu(b.gate.data(), b.up.data(), m * c.n_ff);
  if (Status s = linear(LinearRole::kFfnDown, b.gate.data(), b.h.data()); !s) return s;
  add_inplace(b.x.data(), b.h.data(), m * e);
  return Status::ok();
}

}  // namespace lutq::model
