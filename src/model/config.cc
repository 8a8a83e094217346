#include "model/config.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string_view>

#include "io/checkpoint.h"
#include "lutqfile/lutq_file.h"
#include "model/arch/arch.h"
#include "model/blocks/block.h"

namespace lutq::model {
namespace {

Status err(const io::Checkpoint& gguf, const std::string& msg) {
  return Status::invalid(gguf.path() + ": " + msg);
}

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s = "{";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "}";
}

// ggml dims without trailing 1s (a norm weight may be stored as {n} or {n, 1}).
std::vector<int64_t> trimmed(std::vector<int64_t> dims) {
  while (dims.size() > 1 && dims.back() == 1) dims.pop_back();
  return dims;
}

// A required positive integer {arch}.<suffix>.
Result<int64_t> positive_int(const io::Checkpoint& gguf, const std::string& key) {
  Result<int64_t> v = gguf.get_int(key);
  if (!v) return v.status();
  if (*v <= 0) return err(gguf, "metadata " + key + " = " + std::to_string(*v) + " must be positive");
  return *v;
}

// An optional positive integer; `fallback` when absent.
Result<int64_t> optional_positive_int(const io::Checkpoint& gguf, const std::string& key, int64_t fallback) {
  if (!gguf.has(key)) return fallback;
  return positive_int(gguf, key);
}

Status check_tensor(const io::Checkpoint& gguf, const std::string& name, const std::vector<int64_t>& want,
                    bool required = true) {
  // A weight may be a tensor or, in a lutq file, a BCQ matrix recorded under its name.
  const std::optional<std::vector<int64_t>> dims = lutqfile::weight_dims(gguf, name);
  if (!dims) {
    if (!required) return Status::ok();
    return err(gguf, "missing tensor '" + name + "' (expected shape " + dims_string(want) + ")");
  }
  if (trimmed(*dims) != trimmed(want)) {
    return err(gguf, "tensor '" + name + "' has shape " + dims_string(*dims) + ", expected " +
                         dims_string(want) + " for this config");
  }
  return Status::ok();
}

// A block's tensor; an expert tensor may instead be one lutq entry per expert (all of them).
Status check_expected(const io::Checkpoint& gguf, const TensorExpectation& t) {
  if (t.experts <= 0 || t.dims.size() != 3 || gguf.find_tensor(t.name) != nullptr) {
    return check_tensor(gguf, t.name, t.dims, t.required);
  }
  bool any = false;
  for (int64_t e = 0; e < t.experts && !any; ++e) {
    any = lutqfile::has_weight(gguf, lutqfile::expert_matrix_name(t.name, e));
  }
  if (!any) return check_tensor(gguf, t.name, t.dims, t.required);  // neither form: "missing tensor"
  for (int64_t e = 0; e < t.experts; ++e) {
    const std::string name = lutqfile::expert_matrix_name(t.name, e);
    if (!lutqfile::has_weight(gguf, name)) {
      return err(gguf, "missing expert matrix '" + name + "' (expert " + std::to_string(e) + " of " +
                           std::to_string(t.experts) + "; the 3-D tensor '" + t.name +
                           "' is absent, so every expert needs its own entry)");
    }
    if (Status s = check_tensor(gguf, name, {t.dims[0], t.dims[1]}); !s) return s;
  }
  return Status::ok();
}

Status read_rope(const io::Checkpoint& gguf, const std::string& a, ModelConfig& c) {
  if (gguf.has(a + ".rope.freq_base")) {
    Result<double> base = gguf.get_float(a + ".rope.freq_base");
    if (!base) return base.status();
    if (!(*base > 1.0) || !std::isfinite(*base)) {
      return err(gguf, a + ".rope.freq_base = " + std::to_string(*base) + " must be a finite value > 1");
    }
    c.rope.freq_base = *base;
  }
  Result<int64_t> dim = optional_positive_int(gguf, a + ".rope.dimension_count", c.head_dim);
  if (!dim) return dim.status();
  if (*dim % 2 != 0 || *dim > c.head_dim) {
    return err(gguf, a + ".rope.dimension_count = " + std::to_string(*dim) + " must be even and at most the head size " +
                         std::to_string(c.head_dim));
  }
  c.rope.dim = *dim;

  std::string type = "none";
  if (gguf.has(a + ".rope.scaling.type")) {
    Result<std::string> t = gguf.get_string(a + ".rope.scaling.type");
    if (!t) return t.status();
    type = *t;
  }
  double factor = 0.0;
  if (gguf.has(a + ".rope.scaling.factor")) {
    Result<double> f = gguf.get_float(a + ".rope.scaling.factor");
    if (!f) return f.status();
    factor = *f;
  } else if (gguf.has(a + ".rope.scale_linear")) {  // older converters
    Result<double> f = gguf.get_float(a + ".rope.scale_linear");
    if (!f) return f.status();
    factor = *f;
    if (type == "none") type = "linear";
  }
  if (type == "linear") {
    if (!(factor > 0.0) || !std::isfinite(factor)) {
      return err(gguf, "linear RoPE scaling needs a positive " + a + ".rope.scaling.factor (got " +
                           std::to_string(factor) + ")");
    }
    if (factor != 1.0) {
      c.rope.scaling = RopeScalingType::kLinear;
      c.rope.linear_factor = factor;
    }
  } else if (type != "none") {
    return Status::unsupported(gguf.path() + ": unsupported RoPE scaling type '" + type + "' (" + a +
                               ".rope.scaling.type; supported: none, linear, and llama3 frequency factors via "
                               "rope_freqs.weight)");
  }

  // Llama 3.1-style scaling: llama.cpp's converter bakes it into per-pair frequency divisors.
  if (const io::TensorInfo* t = gguf.find_tensor("rope_freqs.weight"); t != nullptr) {
    if (Status s = check_tensor(gguf, "rope_freqs.weight", {c.rope.dim / 2}); !s) return s;
    if (c.rope.scaling != RopeScalingType::kNone) {
      return Status::unsupported(gguf.path() + ": rope_freqs.weight together with linear RoPE scaling");
    }
    Result<std::vector<float>> f = gguf.dequantize(*t);
    if (!f) return f.status();
    for (float v : *f) {
      if (!(v > 0.0f) || !std::isfinite(v)) return err(gguf, "tensor 'rope_freqs.weight' holds a non-positive value");
    }
    c.rope.scaling = RopeScalingType::kFreqFactors;
    c.rope.freq_factors = std::move(*f);
  }
  return Status::ok();
}

// Tensors of a block that its architecture does not read: refused, never silently ignored.
Status check_unused(const io::Checkpoint& gguf, const ModelConfig& c, int64_t l,
                    const std::vector<TensorExpectation>& used) {
  const std::string p = "blk." + std::to_string(l) + ".";
  for (const char* role : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
    for (const char* extra : {".bias", "_norm.weight"}) {
      const std::string name = p + role + extra;
      bool expected = false;
      for (const TensorExpectation& t : used) expected = expected || t.name == name;
      if (!expected && gguf.find_tensor(name) != nullptr) {
        return Status::unsupported(gguf.path() + ": tensor '" + name + "' is not part of the " + c.arch +
                                   " forward pass (architecture " + c.arch + " has no such weight)");
      }
    }
  }
  // Feed-forward weights of the other kind (a router in a dense file, dense FFN or shared-expert
  // tensors an MoE family does not read).
  for (const char* w : {"ffn_gate", "ffn_up", "ffn_down", "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps",
                        "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ffn_gate_inp_shexp"}) {
    const std::string name = p + w + ".weight";
    bool expected = false;
    for (const TensorExpectation& t : used) expected = expected || t.name == name;
    if (!expected && gguf.find_tensor(name) != nullptr) {
      return Status::unsupported(gguf.path() + ": tensor '" + name + "' is not part of the " + c.arch +
                                 " forward pass" +
                                 (c.n_expert == 0 ? " (a mixture-of-experts weight, but " + c.arch +
                                                        ".expert_count is missing or 0)"
                                                  : " of this configuration"));
    }
  }
  return Status::ok();
}

Status check_tensors(const io::Checkpoint& gguf, const ModelConfig& c, const ArchDef& arch) {
  const int64_t e = c.n_embd;
  if (Status s = check_tensor(gguf, "token_embd.weight", {e, c.n_vocab}); !s) return s;
  if (Status s = check_tensor(gguf, "output_norm.weight", {e}); !s) return s;
  if (Status s = check_tensor(gguf, "output.weight", {e, c.n_vocab}, /*required=*/false); !s) return s;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    std::vector<TensorExpectation> used;
    for (BlockKind kind : arch.layer_blocks(c, l)) {
      for (TensorExpectation& t : block_tensors(kind, c, l)) used.push_back(std::move(t));
    }
    for (const TensorExpectation& t : used) {
      if (Status s = check_expected(gguf, t); !s) return s;
    }
    if (Status s = check_unused(gguf, c, l, used); !s) return s;
  }
  if (gguf.find_tensor("blk." + std::to_string(c.n_layer) + ".attn_norm.weight") != nullptr) {
    return err(gguf, "tensor 'blk." + std::to_string(c.n_layer) + ".attn_norm.weight' exists but block_count is " +
                         std::to_string(c.n_layer));
  }
  return Status::ok();
}

}  // namespace

const char* rope_scaling_name(RopeScalingType type) {
  switch (type) {
    case RopeScalingType::kNone: return "none";
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kFreqFactors: return "freq-factors";
  }
  return "unknown";
}

const char* rope_mode_name(RopeMode mode) { return mode == RopeMode::kNormal ? "normal" : "neox"; }

Result<ModelConfig> ModelConfig::from_checkpoint(const io::Checkpoint& gguf) {
  ModelConfig c;
  if (!gguf.has("general.architecture")) {
    return err(gguf, "metadata general.architecture not found (supported: " + supported_architectures() + ")");
  }
  Result<std::string> arch = gguf.get_string("general.architecture");
  if (!arch) return arch.status();
  const ArchDef* def = find_arch(*arch);
  if (def == nullptr) {
    return Status::unsupported(gguf.path() + ": unsupported architecture '" + *arch +
                               "' (supported: " + supported_architectures() + ")");
  }
  c.arch = *arch;
  const std::string& a = c.arch;
  if (gguf.has("general.name")) {
    if (Result<std::string> n = gguf.get_string("general.name")) c.name = *n;
  }
  Result<int64_t> v = positive_int(gguf, a + ".context_length");
  if (!v) return v.status();
  c.context_length = *v;
  if (!(v = positive_int(gguf, a + ".embedding_length"))) return v.status();
  c.n_embd = *v;
  if (!(v = positive_int(gguf, a + ".block_count"))) return v.status();
  c.n_layer = *v;
  if (!(v = positive_int(gguf, a + ".feed_forward_length"))) return v.status();
  c.n_ff = *v;
  if (!(v = positive_int(gguf, a + ".attention.head_count"))) return v.status();
  c.n_head = *v;
  if (!(v = optional_positive_int(gguf, a + ".attention.head_count_kv", c.n_head))) return v.status();
  c.n_head_kv = *v;
  if (c.n_head % c.n_head_kv != 0) {
    return err(gguf, a + ".attention.head_count = " + std::to_string(c.n_head) + " is not a multiple of " + a +
                         ".attention.head_count_kv = " + std::to_string(c.n_head_kv));
  }

  // Head size: key_length when given (llama.cpp lets n_head*head_dim differ from n_embd; the
  // projections' shapes then say so), else n_embd / n_head, which must divide evenly.
  if (gguf.has(a + ".attention.key_length")) {
    if (!(v = positive_int(gguf, a + ".attention.key_length"))) return v.status();
    c.head_dim = *v;
    Result<int64_t> vl = optional_positive_int(gguf, a + ".attention.value_length", c.head_dim);
    if (!vl) return vl.status();
    if (*vl != c.head_dim) {
      return Status::unsupported(gguf.path() + ": " + a + ".attention.value_length = " + std::to_string(*vl) +
                                 " differs from key_length = " + std::to_string(c.head_dim));
    }
  } else {
    if (c.n_embd % c.n_head != 0) {
      return err(gguf, a + ".embedding_length = " + std::to_string(c.n_embd) + " is not a multiple of " + a +
                           ".attention.head_count = " + std::to_string(c.n_head) +
                           " (head_dim * head_count must equal the hidden size)");
    }
    c.head_dim = c.n_embd / c.n_head;
  }

  Result<double> eps = gguf.get_float(a + ".attention.layer_norm_rms_epsilon");
  if (!eps) return eps.status();
  if (!(*eps > 0.0) || !(*eps < 1.0)) {
    return err(gguf, a + ".attention.layer_norm_rms_epsilon = " + std::to_string(*eps) + " must be in (0, 1)");
  }
  c.rms_eps = static_cast<float>(*eps);

  if (Status s = read_rope(gguf, a, c); !s) return s;

  // Vocabulary: the tokenizer's token list when present, else the embedding's row count.
  const io::TensorInfo* embd = gguf.find_tensor("token_embd.weight");
  if (embd == nullptr) return err(gguf, "missing tensor 'token_embd.weight'");
  if (gguf.has("tokenizer.ggml.tokens")) {
    const io::GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
    if (!tokens->is_array()) return err(gguf, "metadata tokenizer.ggml.tokens is not an array");
    c.n_vocab = static_cast<int64_t>(tokens->count);
  } else {
    c.n_vocab = embd->dims.size() >= 2 ? embd->dims[1] : 0;
  }
  if (c.n_vocab <= 0) return err(gguf, "empty vocabulary");
  if (c.n_vocab > INT32_MAX) return err(gguf, "vocabulary of " + std::to_string(c.n_vocab) + " tokens is too large");
  c.tied_output = !lutqfile::has_weight(gguf, "output.weight");
  if (embd->dims.size() >= 2 && embd->dims[1] != c.n_vocab) {
    return err(gguf, "tensor 'token_embd.weight' has " + std::to_string(embd->dims[1]) +
                         " rows but tokenizer.ggml.tokens lists " + std::to_string(c.n_vocab) + " tokens");
  }

  if (Status s = def->configure(gguf, c); !s) return s;
  if (Status s = check_tensors(gguf, c, *def); !s) return s;
  return c;
}

std::string ModelConfig::summary() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s%s%s%s: %lld layers, hidden %lld, ffn %lld, heads %lld/%lld kv, head_dim %lld, vocab %lld, "
                "ctx %lld, rope %s base %g dim %lld scaling %s, rms_eps %g%s%s%s%s",
                arch.c_str(), name.empty() ? "" : " '", name.c_str(), name.empty() ? "" : "'",
                static_cast<long long>(n_layer), static_cast<long long>(n_embd), static_cast<long long>(n_ff),
                static_cast<long long>(n_head), static_cast<long long>(n_head_kv), static_cast<long long>(head_dim),
                static_cast<long long>(n_vocab), static_cast<long long>(context_length), rope_mode_name(rope.mode), rope.freq_base,
                static_cast<long long>(rope.dim), rope_scaling_name(rope.scaling), static_cast<double>(rms_eps),
                tied_output ? ", tied output" : "", qkv_bias ? ", qkv bias" : "", qk_norm ? ", qk norm" : "",
                qk_norm_full ? " (full width)" : "");
  std::string s = buf;
  if (n_expert > 0) {
    s += ", experts " + std::to_string(n_expert_used) + "/" + std::to_string(n_expert) + " x ffn " +
         std::to_string(n_ff_exp) + (expert_unit_weights ? " (unit weights)" : expert_weights_norm ? " (top-k renormalised)" : "");
    if (n_ff_shexp > 0) s += ", shared expert ffn " + std::to_string(n_ff_shexp) + (shexp_gate ? " (gated)" : "");
  }
  return s;
}

}  // namespace lutq::model
