// The mixture-of-experts keys every MoE family shares ({arch}.expert_*), read into ModelConfig.
#include <string>

#include "io/checkpoint.h"
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

constexpr int64_t kMaxExperts = 4096;

Status bad(const io::Checkpoint& ckpt, const std::string& msg) { return Status::invalid(ckpt.path() + ": " + msg); }

// {key} as a positive integer at most `limit`; `fallback` when absent and not required.
Result<int64_t> expert_int(const io::Checkpoint& ckpt, const std::string& key, bool required, int64_t fallback,
                           int64_t limit, const std::string& limit_name) {
  if (!ckpt.has(key)) {
    if (required) return bad(ckpt, "missing metadata " + key + " (needed by this mixture-of-experts model)");
    return fallback;
  }
  Result<int64_t> v = ckpt.get_int(key);
  if (!v) return Status(v.status().code(), ckpt.path() + ": metadata " + key + ": " + v.status().message());
  if (*v <= 0 || *v > limit) {
    return bad(ckpt, "metadata " + key + " = " + std::to_string(*v) + " must be in 1.." + std::to_string(limit) +
                         (limit_name.empty() ? "" : " (" + limit_name + ")"));
  }
  return *v;
}

}  // namespace

Status read_expert_keys(const io::Checkpoint& ckpt, ModelConfig& c, const MoeTraits& traits) {
  const std::string a = c.arch + ".";
  if (!traits.required) {
    if (!ckpt.has(a + "expert_count")) return Status::ok();
    Result<int64_t> n = ckpt.get_int(a + "expert_count");
    if (!n) return n.status();
    if (*n == 0) return Status::ok();  // a dense model that writes the key
  }
  Result<int64_t> v = expert_int(ckpt, a + "expert_count", true, 0, kMaxExperts, "");
  if (!v) return v.status();
  c.n_expert = *v;
  v = expert_int(ckpt, a + "expert_used_count", true, 0, c.n_expert, a + "expert_count = " + std::to_string(c.n_expert));
  if (!v) return v.status();
  c.n_expert_used = *v;
  v = expert_int(ckpt, a + "expert_feed_forward_length", false, c.n_ff, INT32_MAX, "");
  if (!v) return v.status();
  c.n_ff_exp = *v;
  if (traits.shared_expert) {
    v = expert_int(ckpt, a + "expert_shared_feed_forward_length", false, c.n_ff, INT32_MAX, "");
    if (!v) return v.status();
    c.n_ff_shexp = *v;
    c.shexp_gate = traits.shared_gate;
  }
  c.expert_weights_norm = traits.weights_norm;
  if (ckpt.has(a + "expert_weights_norm")) {
    Result<bool> norm = ckpt.get_bool(a + "expert_weights_norm");
    if (!norm) return Status(norm.status().code(), ckpt.path() + ": metadata " + a + "expert_weights_norm: " +
                                                       norm.status().message());
    c.expert_weights_norm = *norm;
  }
  if (ckpt.has(a + "expert_unit_weights")) {
    Result<bool> unit = ckpt.get_bool(a + "expert_unit_weights");
    if (!unit) return Status(unit.status().code(), ckpt.path() + ": metadata " + a + "expert_unit_weights: " +
                                                       unit.status().message());
    c.expert_unit_weights = *unit;
  }
  return Status::ok();
}

}  // namespace lutq::model
