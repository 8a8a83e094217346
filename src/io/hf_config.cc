// config.json -> general.* / llama.* metadata, as llama.cpp's convert_hf_to_gguf.py (Model)
// writes it, including Llama-3.1 RoPE frequency factors.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>

#include "io/hf_metadata.h"

namespace lutq::io {
namespace {

constexpr std::array<std::string_view, 2> kArchitectures = {"LlamaForCausalLM", "MistralForCausalLM"};
constexpr std::array<std::string_view, 2> kModelTypes = {"llama", "mistral"};

template <size_t N>
std::string joined(const std::array<std::string_view, N>& names) {
  std::string s;
  for (std::string_view n : names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// Reads config fields with their JSON types checked; errors name the file and the field.
class Fields {
 public:
  Fields(const HfJson& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  // Absent or null: nullopt (the caller's default applies).
  const HfJson* get(std::string_view key) const {
    const auto it = obj_.find(std::string(key));
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  Status error(const std::string& msg) const { return Status::invalid(where_ + ": " + msg); }

  // A positive integer that fits int32 (every llama.cpp count does); `fallback` when absent, or
  // an error when fallback < 0.
  Result<int64_t> count(std::string_view key, int64_t fallback = -1) const {
    const HfJson* v = get(key);
    if (v == nullptr) {
      if (fallback < 0) return error("required field '" + std::string(key) + "' is missing");
      return fallback;
    }
    if (!v->is_number_unsigned() || v->get<uint64_t>() == 0 || v->get<uint64_t>() > INT32_MAX) {
      return error("field '" + std::string(key) + "' = " + v->dump() + " must be a positive integer");
    }
    return static_cast<int64_t>(v->get<uint64_t>());
  }
  Result<double> number(std::string_view key, double fallback) const {
    const HfJson* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) return error("field '" + std::string(key) + "' = " + v->dump() + " must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d)) return error("field '" + std::string(key) + "' is not finite");
    return d;
  }
  Result<bool> flag(std::string_view key, bool fallback) const {
    const HfJson* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return error("field '" + std::string(key) + "' = " + v->dump() + " must be true or false");
    return v->get<bool>();
  }
  Result<std::string> text(std::string_view key, std::string fallback) const {
    const HfJson* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) return error("field '" + std::string(key) + "' = " + v->dump() + " must be a string");
    return v->get<std::string>();
  }

 private:
  const HfJson& obj_;
  std::string where_;
};

void put_u32(MetadataList& out, std::string key, int64_t v) {
  out.emplace_back(std::move(key), GgufValue::make_uint(GgufValueType::UINT32, static_cast<uint64_t>(v)));
}
void put_f32(MetadataList& out, std::string key, double v) {
  out.emplace_back(std::move(key), GgufValue::make_float32(static_cast<float>(v)));
}

Status check_architecture(const Fields& f) {
  bool named = false;
  if (const HfJson* archs = f.get("architectures")) {
    if (!archs->is_array()) return f.error("field 'architectures' must be an array of strings");
    bool known = false;
    for (const HfJson& a : *archs) {
      if (!a.is_string()) return f.error("field 'architectures' must be an array of strings");
      known = known || std::find(kArchitectures.begin(), kArchitectures.end(), a.get<std::string>()) !=
                           kArchitectures.end();
    }
    if (!archs->empty() && !known) {
      return Status::unsupported(f.error("").message() + "unsupported architectures " + archs->dump() +
                                 " (supported: " + joined(kArchitectures) + ")");
    }
    named = !archs->empty();
  }
  Result<std::string> type = f.text("model_type", "");
  if (!type) return type.status();
  if (!type->empty()) {
    if (std::find(kModelTypes.begin(), kModelTypes.end(), *type) == kModelTypes.end()) {
      return Status::unsupported(f.error("").message() + "unsupported model_type '" + *type +
                                 "' (supported: " + joined(kModelTypes) + ")");
    }
    named = true;
  }
  if (!named) {
    return f.error("names neither 'architectures' nor 'model_type' (supported: " + joined(kArchitectures) +
                   "; model_type " + joined(kModelTypes) + ")");
  }
  return Status::ok();
}

// llama.cpp's Model.generate_extra_tensors: per-pair divisors of the RoPE frequencies.
Result<std::vector<float>> llama3_rope_factors(const Fields& f, const HfJson& scaling, double base, int64_t dim) {
  const Fields s(scaling, "");
  Result<double> factor = s.number("factor", 8.0);
  Result<double> low = s.number("low_freq_factor", 1.0);
  Result<double> high = s.number("high_freq_factor", 4.0);
  Result<double> old_ctx = s.number("original_max_position_embeddings", 8192.0);
  if (!factor || !low || !high || !old_ctx) return f.error("rope_scaling (llama3) has a field that is not a number");
  if (!(*factor > 0.0) || !(*low > 0.0) || !(*high > *low) || !(*old_ctx > 0.0)) {
    return f.error("rope_scaling (llama3) needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
                   "original_max_position_embeddings > 0");
  }
  const double low_wavelen = *old_ctx / *low;
  const double high_wavelen = *old_ctx / *high;
  std::vector<float> factors;
  for (int64_t i = 0; i < dim; i += 2) {
    // torch computes the frequencies in float32; so do we, to land on the same side of the bands.
    const float freq = 1.0f / std::pow(static_cast<float>(base), static_cast<float>(i) / static_cast<float>(dim));
    const double wavelen = 2.0 * std::numbers::pi / static_cast<double>(freq);
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(static_cast<float>(*factor));
    } else {
      const double smooth = (*old_ctx / wavelen - *low) / (*high - *low);
      factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / *factor + smooth)));
    }
  }
  return factors;
}

}  // namespace

Result<HfModelInfo> hf_config_to_gguf(const HfJson& config, const std::string& where, const std::string& name,
                                      MetadataList& out) {
  if (!config.is_object()) return Status::invalid(where + ": not a JSON object");
  const Fields f(config, where);
  if (Status s = check_architecture(f); !s) return s;

  Result<std::string> act = f.text("hidden_act", "silu");
  if (!act) return act.status();
  if (*act != "silu") return Status::unsupported(where + ": hidden_act '" + *act + "' is not supported (only silu)");
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    Result<bool> b = f.flag(bias, false);
    if (!b) return b.status();
    if (*b) return Status::unsupported(where + ": " + bias + " = true: biases are not part of the supported llama forward pass");
  }

  HfModelInfo info;
  Result<int64_t> n_embd = f.count("hidden_size");
  if (!n_embd) return n_embd.status();
  Result<int64_t> n_layer = f.count("num_hidden_layers");
  if (!n_layer) return n_layer.status();
  Result<int64_t> n_ff = f.count("intermediate_size");
  if (!n_ff) return n_ff.status();
  Result<int64_t> n_head = f.count("num_attention_heads");
  if (!n_head) return n_head.status();
  Result<int64_t> n_head_kv = f.count("num_key_value_heads", *n_head);
  if (!n_head_kv) return n_head_kv.status();
  Result<int64_t> ctx = f.count("max_position_embeddings", 2048);  // transformers' LlamaConfig default
  if (!ctx) return ctx.status();
  Result<int64_t> vocab = f.count("vocab_size", 0);
  if (!vocab) return vocab.status();
  const bool has_head_dim = f.get("head_dim") != nullptr;
  Result<int64_t> head_dim = f.count("head_dim", *n_embd / *n_head);
  if (!head_dim) return head_dim.status();
  Result<double> eps = f.number("rms_norm_eps", 1e-6);
  if (!eps) return eps.status();
  Result<double> theta = f.number("rope_theta", 10000.0);
  if (!theta) return theta.status();
  Result<bool> tied = f.flag("tie_word_embeddings", false);
  if (!tied) return tied.status();

  // Mistral's sliding-window attention equals full attention while the context fits the window;
  // the runtime has no window, so the context is capped there instead of silently diverging.
  int64_t context = *ctx;
  Result<std::string> type = f.text("model_type", "");
  if (!type) return type.status();
  if (*type == "mistral") {
    const bool absent = config.find("sliding_window") == config.end();
    Result<int64_t> window = f.count("sliding_window", absent ? 4096 : 0);  // MistralConfig default 4096
    if (!window) return window.status();
    if (*window > 0) context = std::min(context, *window);
  }

  const std::string a = "llama.";
  out.emplace_back("general.architecture", GgufValue::make_string("llama"));
  out.emplace_back("general.name", GgufValue::make_string(name));
  put_u32(out, a + "context_length", context);
  put_u32(out, a + "embedding_length", *n_embd);
  put_u32(out, a + "block_count", *n_layer);
  put_u32(out, a + "feed_forward_length", *n_ff);
  put_u32(out, a + "rope.dimension_count", *head_dim);
  put_u32(out, a + "attention.head_count", *n_head);
  put_u32(out, a + "attention.head_count_kv", *n_head_kv);
  put_f32(out, a + "rope.freq_base", *theta);
  put_f32(out, a + "attention.layer_norm_rms_epsilon", *eps);
  if (has_head_dim) {
    put_u32(out, a + "attention.key_length", *head_dim);
    put_u32(out, a + "attention.value_length", *head_dim);
  }
  if (*vocab > 0) put_u32(out, a + "vocab_size", *vocab);

  if (const HfJson* scaling = f.get("rope_scaling")) {
    if (!scaling->is_object()) return f.error("field 'rope_scaling' must be an object or null");
    const Fields s(*scaling, where + " rope_scaling");
    Result<std::string> kind = s.text("rope_type", "");
    if (!kind) return kind.status();
    if (kind->empty()) {
      if (!(kind = s.text("type", "default"))) return kind.status();
    }
    if (*kind == "llama3") {
      Result<std::vector<float>> factors = llama3_rope_factors(f, *scaling, *theta, *head_dim);
      if (!factors) return factors.status();
      info.rope_freqs = std::move(*factors);
    } else if (*kind != "default") {
      // linear (and anything else, which ModelConfig then reports as unsupported by name).
      out.emplace_back(a + "rope.scaling.type", GgufValue::make_string(*kind));
      if (s.get("factor") != nullptr) {
        Result<double> factor = s.number("factor", 1.0);
        if (!factor) return factor.status();
        put_f32(out, a + "rope.scaling.factor", *factor);
      }
    }
  }

  info.n_head = *n_head;
  info.n_head_kv = *n_head_kv;
  info.vocab_size = *vocab;
  info.tied_embeddings = *tied;
  return info;
}

}  // namespace lutq::io
