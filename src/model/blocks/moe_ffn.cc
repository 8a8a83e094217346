#include "model/blocks/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <utility>

#include "lutqfile/lutq_file.h"

namespace lutq::model {
namespace {

struct Expert {
  Linear gate, up, down;
};

// x [m][k] through one expert's SwiGLU into y [m][n_embd]; gate / up are scratch [m][ff].
Status run_expert(int64_t layer, int64_t index, const Expert& ex, const float* x, int64_t m, float* gate, float* up,
                  float* y, ForwardContext& ctx) {
  LinearObserver* obs = ctx.observer;
  const int64_t k = ex.gate.k();
  if (obs != nullptr) {
    if (Status s = obs->observe_expert(layer, LinearRole::kFfnGate, index, x, m, k); !s) return s;
    if (Status s = obs->observe_expert(layer, LinearRole::kFfnUp, index, x, m, k); !s) return s;
  }
  const Linear* lins[] = {&ex.gate, &ex.up};
  float* outs[] = {gate, up};
  if (Status s = Linear::forward_shared(lins, x, m, outs, ctx.pool); !s) return s;
  swiglu(gate, up, m * ex.gate.n());
  if (obs != nullptr) {
    if (Status s = obs->observe_expert(layer, LinearRole::kFfnDown, index, gate, m, ex.down.k()); !s) return s;
  }
  return ex.down.forward(gate, m, y, ctx.pool);
}

class MoeFfn final : public Block {
 public:
  MoeFfn(std::vector<float> norm, Linear router, std::vector<Expert> experts, std::optional<Expert> shared,
         std::vector<float> shared_gate)
      : norm_(std::move(norm)), router_(std::move(router)), experts_(std::move(experts)), shared_(std::move(shared)),
        shared_gate_(std::move(shared_gate)) {}

  Status forward(int64_t layer, float* x, ForwardContext& ctx) const override {
    const ModelConfig& c = ctx.config;
    const int64_t m = ctx.m();
    const int64_t e = c.n_embd;
    const auto n_expert = static_cast<int64_t>(experts_.size());
    Scratch& s = ctx.scratch;
    float* h = Scratch::rows(s.h, m, e);
    float* logits = Scratch::rows(s.router, m, n_expert);
    float* out = Scratch::rows(s.moe_out, m, e);
    rms_norm_rows(x, norm_.data(), m, e, c.rms_eps, h);
    if (Status st = router_.forward(h, m, logits, ctx.pool); !st) return st;
    const ExpertGroups groups =
        group_by_expert(route_rows(logits, m, n_expert, c.n_expert_used, expert_weights(c)), m, n_expert);
    std::fill(out, out + m * e, 0.0f);
    for (int64_t ex = 0; ex < n_expert; ++ex) {
      const int64_t first = groups.offset[static_cast<size_t>(ex)];
      const int64_t me = groups.offset[static_cast<size_t>(ex) + 1] - first;
      if (me == 0) continue;
      const int64_t ff = experts_[static_cast<size_t>(ex)].gate.n();
      float* in = Scratch::rows(s.moe_in, me, e);
      for (int64_t i = 0; i < me; ++i) {
        std::memcpy(in + i * e, h + groups.row[static_cast<size_t>(first + i)] * e, sizeof(float) * static_cast<size_t>(e));
      }
      // The expert's output overwrites its gathered input (no longer needed once gate/up ran).
      if (Status st = run_expert(layer, ex, experts_[static_cast<size_t>(ex)], in, me, Scratch::rows(s.gate, me, ff),
                                 Scratch::rows(s.up, me, ff), in, ctx);
          !st) {
        return st;
      }
      for (int64_t i = 0; i < me; ++i) {
        const float w = groups.weight[static_cast<size_t>(first + i)];
        float* dst = out + groups.row[static_cast<size_t>(first + i)] * e;
        for (int64_t j = 0; j < e; ++j) dst[j] += w * in[i * e + j];
      }
    }
    if (shared_) {
      if (Status st = add_shared(layer, h, out, ctx); !st) return st;
    }
    add_inplace(x, out, m * e);
    return Status::ok();
  }

  Linear* find(LinearRole) override { return nullptr; }

  Linear* find_expert(LinearRole role, int64_t expert) override {
    Expert* ex = nullptr;
    if (expert == LinearObserver::kSharedExpert) {
      ex = shared_ ? &*shared_ : nullptr;
    } else if (expert >= 0 && expert < static_cast<int64_t>(experts_.size())) {
      ex = &experts_[static_cast<size_t>(expert)];
    }
    if (ex == nullptr) return nullptr;
    switch (role) {
      case LinearRole::kFfnGate: return &ex->gate;
      case LinearRole::kFfnUp: return &ex->up;
      case LinearRole::kFfnDown: return &ex->down;
      default: return nullptr;
    }
  }

 private:
  // out += shared(h) for every row, scaled by sigmoid(shared_gate · h) when gated.
  Status add_shared(int64_t layer, const float* h, float* out, ForwardContext& ctx) const {
    const int64_t m = ctx.m();
    const int64_t e = ctx.config.n_embd;
    const int64_t ff = shared_->gate.n();
    Scratch& s = ctx.scratch;
    float* y = Scratch::rows(s.moe_in, m, e);
    if (Status st = run_expert(layer, LinearObserver::kSharedExpert, *shared_, h, m, Scratch::rows(s.gate, m, ff),
                               Scratch::rows(s.up, m, ff), y, ctx);
        !st) {
      return st;
    }
    for (int64_t r = 0; r < m; ++r) {
      float scale = 1.0f;
      if (!shared_gate_.empty()) {
        double z = 0.0;
        for (int64_t j = 0; j < e; ++j) z += static_cast<double>(shared_gate_[static_cast<size_t>(j)]) * h[r * e + j];
        scale = static_cast<float>(1.0 / (1.0 + std::exp(-z)));
      }
      for (int64_t j = 0; j < e; ++j) out[r * e + j] += scale * y[r * e + j];
    }
    return Status::ok();
  }

  std::vector<float> norm_;
  Linear router_;  // [n_expert][n_embd], dense fp32
  std::vector<Expert> experts_;
  std::optional<Expert> shared_;
  std::vector<float> shared_gate_;  // [n_embd] or empty
};

std::string tensor(int64_t l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

// One expert's layer of the 3-D tensor `name` from the slab [E][n][k] (read on first use).
Result<Linear> expert_from_slab(LayerBuilder& b, const std::string& name, int64_t ex, LinearRole role, int64_t n,
                                int64_t k, std::optional<std::vector<float>>& slab) {
  if (!slab) {
    if (!b.has_weight(name)) {
      return Status::invalid(b.path() + ": missing expert matrix '" + lutqfile::expert_matrix_name(name, ex) +
                             "' (no lutq entry for it and no 3-D tensor '" + name + "')");
    }
    Result<std::vector<float>> all = b.vector(name);
    if (!all) return all.status();
    const int64_t n_expert = b.config().n_expert;
    if (static_cast<int64_t>(all->size()) != n_expert * n * k) {
      return Status::invalid("tensor '" + name + "' holds " + std::to_string(all->size()) + " values, expected " +
                             std::to_string(n_expert) + " experts of " + std::to_string(n) + "x" + std::to_string(k));
    }
    slab = std::move(*all);
  }
  const auto first = slab->begin() + ex * n * k;
  Result<Linear> lin = b.linear_from(name, std::vector<float>(first, first + n * k), n, k, role);
  if (!lin) return Status(lin.status().code(), lin.status().message() + " (expert " + std::to_string(ex) + ")");
  return lin;
}

// The experts of "blk.l.<base>.weight", one Linear each: expert e from its own matrix
// (lutqfile::expert_matrix_name: a BCQ, int8 or QMoE entry of a lutq file) when the file has
// one, else from its slice of the 3-D tensor ([E][n][k] row-major).
Result<std::vector<Linear>> load_experts(LayerBuilder& b, int64_t l, const char* base, LinearRole role, int64_t n,
                                         int64_t k) {
  const std::string name = tensor(l, base) + ".weight";
  const int64_t n_expert = b.config().n_expert;
  std::optional<std::vector<float>> slab;
  std::vector<Linear> out;
  out.reserve(static_cast<size_t>(n_expert));
  for (int64_t ex = 0; ex < n_expert; ++ex) {
    const std::string own = lutqfile::expert_matrix_name(name, ex);
    Result<Linear> lin =
        b.has_weight(own) ? b.linear_named(own, role) : expert_from_slab(b, name, ex, role, n, k, slab);
    if (!lin) return lin.status();
    if (lin->n() != n || lin->k() != k) {
      return Status::invalid(b.path() + ": expert matrix '" + own + "' is " + std::to_string(lin->n()) + "x" +
                             std::to_string(lin->k()) + ", expected " + std::to_string(n) + "x" + std::to_string(k));
    }
    out.push_back(std::move(*lin));
  }
  return out;
}

Result<std::vector<Expert>> load_routed_experts(LayerBuilder& b, int64_t l) {
  const ModelConfig& c = b.config();
  Result<std::vector<Linear>> gate = load_experts(b, l, "ffn_gate_exps", LinearRole::kFfnGate, c.n_ff_exp, c.n_embd);
  if (!gate) return gate.status();
  Result<std::vector<Linear>> up = load_experts(b, l, "ffn_up_exps", LinearRole::kFfnUp, c.n_ff_exp, c.n_embd);
  if (!up) return up.status();
  Result<std::vector<Linear>> down = load_experts(b, l, "ffn_down_exps", LinearRole::kFfnDown, c.n_embd, c.n_ff_exp);
  if (!down) return down.status();
  std::vector<Expert> experts;
  for (size_t i = 0; i < gate->size(); ++i) {
    experts.push_back({std::move((*gate)[i]), std::move((*up)[i]), std::move((*down)[i])});
  }
  return experts;
}

// The shared expert's three layers, each in whatever form the file holds it (a BCQ or int8 entry
// of a lutq file, else the fp32 tensor, kept dense or quantized at load as the spec says).
Result<Expert> load_shared_expert(LayerBuilder& b, int64_t l) {
  const ModelConfig& c = b.config();
  std::vector<Linear> lin;
  for (LinearRole role : kFfnRoles) {
    const std::string name = shared_expert_weight(l, role);
    const int64_t n = role == LinearRole::kFfnDown ? c.n_embd : c.n_ff_shexp;
    const int64_t k = role == LinearRole::kFfnDown ? c.n_ff_shexp : c.n_embd;
    Result<Linear> r = b.linear_named(name, role);
    if (!r) return r.status();
    if (r->n() != n || r->k() != k) {
      return Status::invalid(b.path() + ": shared expert matrix '" + name + "' is " + std::to_string(r->n()) + "x" +
                             std::to_string(r->k()) + ", expected " + std::to_string(n) + "x" + std::to_string(k));
    }
    lin.push_back(std::move(*r));
  }
  return Expert{std::move(lin[0]), std::move(lin[1]), std::move(lin[2])};
}

}  // namespace

std::string shared_expert_weight(int64_t l, LinearRole role) {
  return tensor(l, role_name(role)) + "_shexp.weight";
}

ExpertWeights expert_weights(const ModelConfig& c) {
  if (c.expert_unit_weights) return ExpertWeights::kUnit;
  return c.expert_weights_norm ? ExpertWeights::kRenormalised : ExpertWeights::kProbabilities;
}

Routing route_rows(const float* logits, int64_t m, int64_t n_expert, int64_t k, ExpertWeights weights) {
  Routing r;
  r.k = k;
  r.expert.resize(static_cast<size_t>(m * k));
  r.weight.resize(static_cast<size_t>(m * k));
  std::vector<double> p(static_cast<size_t>(n_expert));
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  for (int64_t row = 0; row < m; ++row) {
    const float* z = logits + row * n_expert;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n_expert; ++i) {
      p[static_cast<size_t>(i)] = std::isnan(z[i]) ? -std::numeric_limits<double>::infinity() : z[i];
      mx = std::max(mx, p[static_cast<size_t>(i)]);
    }
    if (!std::isfinite(mx)) mx = 0.0;  // all -inf (or +inf): keep the sum finite below
    double sum = 0.0;
    for (double& v : p) sum += (v = std::exp(v - mx));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      const double pa = p[static_cast<size_t>(a)], pb = p[static_cast<size_t>(b)];
      return pa > pb || (pa == pb && a < b);
    });
    double chosen = 0.0;
    for (int64_t j = 0; j < k; ++j) chosen += p[static_cast<size_t>(order[static_cast<size_t>(j)])];
    const double denom = weights == ExpertWeights::kRenormalised ? chosen : sum;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t ex = order[static_cast<size_t>(j)];
      float w = denom > 0.0 && std::isfinite(denom) ? static_cast<float>(p[static_cast<size_t>(ex)] / denom) : 0.0f;
      if (weights == ExpertWeights::kUnit) w = 1.0f;
      r.expert[static_cast<size_t>(row * k + j)] = ex;
      r.weight[static_cast<size_t>(row * k + j)] = w;
    }
  }
  return r;
}

ExpertGroups group_by_expert(const Routing& routing, int64_t m, int64_t n_expert) {
  ExpertGroups g;
  g.offset.assign(static_cast<size_t>(n_expert) + 1, 0);
  for (int32_t ex : routing.expert) ++g.offset[static_cast<size_t>(ex) + 1];
  for (size_t i = 1; i < g.offset.size(); ++i) g.offset[i] += g.offset[i - 1];
  g.row.resize(routing.expert.size());
  g.weight.resize(routing.expert.size());
  std::vector<int64_t> next(g.offset.begin(), g.offset.end() - 1);
  for (int64_t row = 0; row < m; ++row) {  // rows ascending within each expert
    for (int64_t j = 0; j < routing.k; ++j) {
      const auto at = static_cast<size_t>(row * routing.k + j);
      const int64_t slot = next[static_cast<size_t>(routing.expert[at])]++;
      g.row[static_cast<size_t>(slot)] = row;
      g.weight[static_cast<size_t>(slot)] = routing.weight[at];
    }
  }
  return g;
}

std::vector<TensorExpectation> moe_ffn_tensors(const ModelConfig& c, int64_t l) {
  const int64_t e = c.n_embd;
  std::vector<TensorExpectation> t = {
      {tensor(l, "ffn_norm.weight"), {e}},
      {tensor(l, "ffn_gate_inp.weight"), {e, c.n_expert}},
      {tensor(l, "ffn_gate_exps.weight"), {e, c.n_ff_exp, c.n_expert}, true, c.n_expert},
      {tensor(l, "ffn_up_exps.weight"), {e, c.n_ff_exp, c.n_expert}, true, c.n_expert},
      {tensor(l, "ffn_down_exps.weight"), {c.n_ff_exp, e, c.n_expert}, true, c.n_expert},
  };
  if (c.n_ff_shexp > 0) {
    t.push_back({shared_expert_weight(l, LinearRole::kFfnGate), {e, c.n_ff_shexp}});
    t.push_back({shared_expert_weight(l, LinearRole::kFfnUp), {e, c.n_ff_shexp}});
    t.push_back({shared_expert_weight(l, LinearRole::kFfnDown), {c.n_ff_shexp, e}});
    if (c.shexp_gate) t.push_back({tensor(l, "ffn_gate_inp_shexp.weight"), {e}});
  }
  return t;
}

Result<std::unique_ptr<Block>> build_moe_ffn(LayerBuilder& b, int64_t l) {
  const ModelConfig& c = b.config();
  Result<std::vector<float>> norm = b.vector(tensor(l, "ffn_norm.weight"));
  if (!norm) return norm.status();
  // The router stays fp32: its logits pick the experts, and it is small (E x n_embd).
  Result<std::vector<float>> router_w = b.vector(tensor(l, "ffn_gate_inp.weight"));
  if (!router_w) return router_w.status();
  Result<Linear> router = Linear::dense(std::make_shared<const std::vector<float>>(std::move(*router_w)), c.n_expert,
                                        c.n_embd, b.isa());
  if (!router) return router.status();
  Result<std::vector<Expert>> experts = load_routed_experts(b, l);
  if (!experts) return experts.status();
  std::optional<Expert> shared;
  std::vector<float> shared_gate;
  if (c.n_ff_shexp > 0) {
    Result<Expert> sh = load_shared_expert(b, l);
    if (!sh) return sh.status();
    shared = std::move(*sh);
    if (c.shexp_gate) {
      Result<std::vector<float>> g = b.vector(tensor(l, "ffn_gate_inp_shexp.weight"));
      if (!g) return g.status();
      shared_gate = std::move(*g);
    }
  }
  return std::unique_ptr<Block>(std::make_unique<MoeFfn>(std::move(*norm), std::move(*router), std::move(*experts),
                                                         std::move(shared), std::move(shared_gate)));
}

}  // namespace lutq::model
