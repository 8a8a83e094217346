#include "model/blocks/ffn.h"

#include <utility>

namespace lutq::model {
namespace {

class SwigluFfn final : public Block {
 public:
  SwigluFfn(std::vector<float> norm, Linear gate, Linear up, Linear down)
      : norm_(std::move(norm)), gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)) {}

  Status forward(int64_t layer, float* x, ForwardContext& ctx) const override {
    const ModelConfig& c = ctx.config;
    const int64_t m = ctx.m();
    const int64_t e = c.n_embd;
    float* h = Scratch::rows(ctx.scratch.h, m, e);
    float* gate = Scratch::rows(ctx.scratch.gate, m, c.n_ff);
    float* up = Scratch::rows(ctx.scratch.up, m, c.n_ff);
    rms_norm_rows(x, norm_.data(), m, e, c.rms_eps, h);
    const LinearRole roles[] = {LinearRole::kFfnGate, LinearRole::kFfnUp};
    const Linear* lins[] = {&gate_, &up_};
    float* outs[] = {gate, up};
    if (Status s = ctx.linears(layer, roles, lins, h, outs); !s) return s;
    swiglu(gate, up, m * c.n_ff);
    if (Status s = ctx.linear(layer, LinearRole::kFfnDown, down_, gate, h); !s) return s;
    if (Status s = ctx.all_reduce(h, e); !s) return s;
    add_inplace(x, h, m * e);
    return Status::ok();
  }

  Linear* find(LinearRole role) override {
    switch (role) {
      case LinearRole::kFfnGate: return &gate_;
      case LinearRole::kFfnUp: return &up_;
      case LinearRole::kFfnDown: return &down_;
      default: return nullptr;
    }
  }

 private:
  std::vector<float> norm_;
  Linear gate_, up_, down_;
};

std::string tensor(int64_t l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

}  // namespace

std::vector<TensorExpectation> swiglu_ffn_tensors(const ModelConfig& c, int64_t l) {
  const int64_t e = c.n_embd;
  return {
      {tensor(l, "ffn_norm.weight"), {e}},
      {tensor(l, "ffn_gate.weight"), {e, c.n_ff}},
      {tensor(l, "ffn_up.weight"), {e, c.n_ff}},
      {tensor(l, "ffn_down.weight"), {c.n_ff, e}},
  };
}

Result<std::unique_ptr<Block>> build_swiglu_ffn(LayerBuilder& b, int64_t l) {
  Result<std::vector<float>> norm = b.vector(tensor(l, "ffn_norm.weight"));
  if (!norm) return norm.status();
  std::vector<Linear> lin;
  for (LinearRole role : kFfnRoles) {
    Result<Linear> r = b.linear(l, role, /*bias=*/false);
    if (!r) return r.status();
    lin.push_back(std::move(*r));
  }
  return std::unique_ptr<Block>(
      std::make_unique<SwigluFfn>(std::move(*norm), std::move(lin[0]), std::move(lin[1]), std::move(lin[2])));
}

}  // namespace lutq::model
