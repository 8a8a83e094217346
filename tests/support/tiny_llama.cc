// Tiny random Llama models for tests (see tiny_llama.h).
#include "support/tiny_llama.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <span>

#include "io/gguf_writer.h"
#include "support/safetensors_writer.h"

namespace lutq::testing {
namespace {

void add_tensor(io::GgufWriter& wr, const TinySpec& s, const std::string& name, std::vector<int64_t> dims,
                const std::vector<float>& data) {
  if (name == s.drop_tensor) return;
  std::vector<float> payload = data;
  if (name == s.misshape_tensor) {
    dims[0] += 1;
    int64_t total = 1;
    for (int64_t d : dims) total *= d;
    payload.assign(static_cast<size_t>(total), 0.5f);
  }
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  ASSERT_TRUE(wr.add_tensor(name, std::move(dims), io::GgmlType::F32,
                            std::span<const uint8_t>(p, payload.size() * sizeof(float)))
                  .is_ok());
}

std::vector<float> concat(const std::vector<std::vector<float>>& parts) {
  std::vector<float> all;
  for (const std::vector<float>& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

void make_experts(std::mt19937& rng, const TinySpec& s, TinyWeights::Layer& L) {
  const int64_t e = s.n_embd;
  const int64_t ff = tiny_expert_ff(s);
  const auto n = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  const float ke = 1.0f / std::sqrt(static_cast<float>(e));
  L.router = random_vec(rng, n(s.n_expert, e), 2.0f * ke);  // peaky enough that the top-k is well separated
  for (int64_t x = 0; x < s.n_expert; ++x) {
    L.eg.push_back(random_vec(rng, n(ff, e), ke));
    L.eu.push_back(random_vec(rng, n(ff, e), ke));
    L.ed.push_back(random_vec(rng, n(e, ff), 1.0f / std::sqrt(static_cast<float>(ff))));
  }
  if (s.n_ff_shexp > 0) {
    L.sg = random_vec(rng, n(s.n_ff_shexp, e), ke);
    L.su = random_vec(rng, n(s.n_ff_shexp, e), ke);
    L.sd = random_vec(rng, n(e, s.n_ff_shexp), 1.0f / std::sqrt(static_cast<float>(s.n_ff_shexp)));
    L.shexp_gate = random_vec(rng, n(1, e), ke);
  }
}

void add_expert_keys(io::GgufWriter& wr, const TinySpec& s) {
  const std::string a = s.arch;
  EXPECT_TRUE(wr.add_uint32(a + ".expert_count", static_cast<uint32_t>(s.n_expert)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".expert_used_count", static_cast<uint32_t>(s.n_expert_used)).is_ok());
  if (s.n_ff_exp > 0) {
    EXPECT_TRUE(wr.add_uint32(a + ".expert_feed_forward_length", static_cast<uint32_t>(s.n_ff_exp)).is_ok());
  }
  if (s.n_ff_shexp > 0) {
    EXPECT_TRUE(wr.add_uint32(a + ".expert_shared_feed_forward_length", static_cast<uint32_t>(s.n_ff_shexp)).is_ok());
  }
  if (s.weights_norm_key >= 0) {
    EXPECT_TRUE(wr.add_bool(a + ".expert_weights_norm", s.weights_norm_key == 1).is_ok());
  }
}

void add_expert_tensors(io::GgufWriter& wr, const TinySpec& s, const std::string& p, const TinyWeights::Layer& L) {
  const int64_t e = s.n_embd;
  const int64_t ff = tiny_expert_ff(s);
  const int64_t E = s.n_expert;
  add_tensor(wr, s, p + "ffn_gate_inp.weight", {e, E}, L.router);
  add_tensor(wr, s, p + "ffn_gate_exps.weight", {e, ff, E}, concat(L.eg));
  add_tensor(wr, s, p + "ffn_up_exps.weight", {e, ff, E}, concat(L.eu));
  add_tensor(wr, s, p + "ffn_down_exps.weight", {ff, e, E}, concat(L.ed));
  if (s.n_ff_shexp > 0) {
    add_tensor(wr, s, p + "ffn_gate_shexp.weight", {e, s.n_ff_shexp}, L.sg);
    add_tensor(wr, s, p + "ffn_up_shexp.weight", {e, s.n_ff_shexp}, L.su);
    add_tensor(wr, s, p + "ffn_down_shexp.weight", {s.n_ff_shexp, e}, L.sd);
    add_tensor(wr, s, p + "ffn_gate_inp_shexp.weight", {e}, L.shexp_gate);
  }
}

}  // namespace

int64_t tiny_expert_ff(const TinySpec& s) { return s.n_ff_exp > 0 ? s.n_ff_exp : s.n_ff; }

bool tiny_expert_weights_norm(const TinySpec& s) {
  if (s.weights_norm_key >= 0) return s.weights_norm_key == 1;
  return s.arch == "llama" || s.arch == "qwen3moe";
}

TinySpec tiny_moe_spec(const std::string& arch) {
  TinySpec s;
  s.arch = arch;
  s.n_embd = 32;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = 48;
  s.n_vocab = 50;
  s.n_expert = 6;
  s.n_expert_used = 2;
  if (arch == "qwen2moe" || arch == "qwen3moe") s.n_ff_exp = 24;
  if (arch == "qwen2moe") s.n_ff_shexp = 40;
  if (arch != "llama") s.rope_base = 1000000.0;
  s.seed = 23;
  return s;
}

TinySpec tiny_qwen2moe_spec_g32() {
  TinySpec s = tiny_moe_spec("qwen2moe");
  s.n_ff_exp = 32;
  s.n_ff_shexp = 64;
  return s;
}

std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale, float mean) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = mean + scale * d(rng);
  return v;
}

std::vector<float> permute_qk(const std::vector<float>& w, int64_t n_heads, int64_t k) {
  const auto rows = static_cast<int64_t>(w.size()) / k;
  const int64_t hd = rows / n_heads;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const float* src = w.data() + (h * hd + half * (hd / 2) + i) * k;
        std::copy(src, src + k, out.data() + (h * hd + 2 * i + half) * k);
      }
    }
  }
  return out;
}

Tiny make_tiny(const TinySpec& s) {
  Tiny t;
  t.spec = s;
  std::mt19937 rng(s.seed);
  const int64_t e = s.n_embd;
  const int64_t hd = tiny_head_dim(s);
  const int64_t qd = s.n_head * hd;
  const int64_t kvd = s.n_head_kv * hd;
  const bool permuted = s.arch == "llama";  // llama.cpp permutes Q/K for llama only
  const auto n = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  const float ke = 1.0f / std::sqrt(static_cast<float>(e));
  t.w.embd = random_vec(rng, n(s.n_vocab, e), 1.0f);
  t.w.out = random_vec(rng, n(s.n_vocab, e), ke);
  t.w.out_norm = random_vec(rng, n(1, e), 0.1f, 1.0f);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    TinyWeights::Layer L;
    L.attn_norm = random_vec(rng, n(1, e), 0.1f, 1.0f);
    L.ffn_norm = random_vec(rng, n(1, e), 0.1f, 1.0f);
    L.wq = random_vec(rng, n(qd, e), 2.0f * ke);  // larger Q/K: peaky attention exercises RoPE
    L.wk = random_vec(rng, n(kvd, e), 2.0f * ke);
    L.wv = random_vec(rng, n(kvd, e), ke);
    L.wo = random_vec(rng, n(e, qd), ke);
    if (s.n_expert > 0) {
      make_experts(rng, s, L);
    } else {
      L.wg = random_vec(rng, n(s.n_ff, e), ke);
      L.wu = random_vec(rng, n(s.n_ff, e), ke);
      L.wd = random_vec(rng, n(e, s.n_ff), 1.0f / std::sqrt(static_cast<float>(s.n_ff)));
    }
    if (s.arch == "qwen2" || s.arch == "qwen2moe") {
      L.bq = random_vec(rng, n(1, qd), 0.5f);
      L.bk = random_vec(rng, n(1, kvd), 0.5f);
      L.bv = random_vec(rng, n(1, kvd), 0.5f);
    }
    if (s.arch == "qwen3" || s.arch == "qwen3moe") {
      L.q_norm = random_vec(rng, n(1, hd), 0.2f, 1.0f);
      L.k_norm = random_vec(rng, n(1, hd), 0.2f, 1.0f);
    }
    if (s.arch == "olmoe") {
      L.q_norm = random_vec(rng, n(1, qd), 0.2f, 1.0f);
      L.k_norm = random_vec(rng, n(1, kvd), 0.2f, 1.0f);
    }
    t.w.layers.push_back(std::move(L));
  }
  if (s.freq_factors) {
    for (int64_t i = 0; i < hd / 2; ++i) t.w.freq_factors.push_back(1.0f + 0.5f * static_cast<float>(i % 4));
  }

  io::GgufWriter wr;
  const std::string a = s.arch;
  EXPECT_TRUE(wr.add_string("general.architecture", a).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".context_length", static_cast<uint32_t>(s.ctx)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".embedding_length", static_cast<uint32_t>(e)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".block_count", static_cast<uint32_t>(s.n_layer)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv)).is_ok());
  EXPECT_TRUE(wr.add_float32(a + ".rope.freq_base", static_cast<float>(s.rope_base)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".rope.dimension_count", static_cast<uint32_t>(hd)).is_ok());
  if (s.head_dim > 0) {
    EXPECT_TRUE(wr.add_uint32(a + ".attention.key_length", static_cast<uint32_t>(hd)).is_ok());
    EXPECT_TRUE(wr.add_uint32(a + ".attention.value_length", static_cast<uint32_t>(hd)).is_ok());
  }
  EXPECT_TRUE(wr.add_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f).is_ok());
  if (!s.rope_scaling.empty()) {
    EXPECT_TRUE(wr.add_string(a + ".rope.scaling.type", s.rope_scaling).is_ok());
    EXPECT_TRUE(wr.add_float32(a + ".rope.scaling.factor", s.rope_factor).is_ok());
  }
  if (s.n_expert > 0) add_expert_keys(wr, s);
  if (s.tokens_metadata) {
    std::vector<std::string> toks;
    for (int64_t i = 0; i < s.n_vocab; ++i) toks.push_back("t" + std::to_string(i));
    EXPECT_TRUE(wr.add("tokenizer.ggml.tokens", io::GgufValue::make_string_array(std::move(toks))).is_ok());
    if (!s.tokenizer_model.empty()) {
      EXPECT_TRUE(wr.add_string("tokenizer.ggml.model", s.tokenizer_model).is_ok());
      std::vector<float> scores;
      for (int64_t i = 0; i < s.n_vocab; ++i) scores.push_back(-static_cast<float>(i));
      EXPECT_TRUE(wr.add("tokenizer.ggml.scores", io::GgufValue::make_float32_array(scores)).is_ok());
    }
  }
  add_tensor(wr, s, "token_embd.weight", {e, s.n_vocab}, t.w.embd);
  if (!s.tied) add_tensor(wr, s, "output.weight", {e, s.n_vocab}, t.w.out);
  add_tensor(wr, s, "output_norm.weight", {e}, t.w.out_norm);
  if (s.freq_factors) add_tensor(wr, s, "rope_freqs.weight", {hd / 2}, t.w.freq_factors);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const TinyWeights::Layer& L = t.w.layers[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    add_tensor(wr, s, p + "attn_norm.weight", {e}, L.attn_norm);
    add_tensor(wr, s, p + "attn_q.weight", {e, qd}, permuted ? permute_qk(L.wq, s.n_head, e) : L.wq);
    add_tensor(wr, s, p + "attn_k.weight", {e, kvd}, permuted ? permute_qk(L.wk, s.n_head_kv, e) : L.wk);
    add_tensor(wr, s, p + "attn_v.weight", {e, kvd}, L.wv);
    if (!L.bq.empty()) {
      add_tensor(wr, s, p + "attn_q.bias", {qd}, L.bq);
      add_tensor(wr, s, p + "attn_k.bias", {kvd}, L.bk);
      add_tensor(wr, s, p + "attn_v.bias", {kvd}, L.bv);
    }
    if (!L.q_norm.empty()) {
      add_tensor(wr, s, p + "attn_q_norm.weight", {static_cast<int64_t>(L.q_norm.size())}, L.q_norm);
      add_tensor(wr, s, p + "attn_k_norm.weight", {static_cast<int64_t>(L.k_norm.size())}, L.k_norm);
    }
    add_tensor(wr, s, p + "attn_output.weight", {qd, e}, L.wo);
    add_tensor(wr, s, p + "ffn_norm.weight", {e}, L.ffn_norm);
    if (s.n_expert > 0) {
      add_expert_tensors(wr, s, p, L);
    } else {
      add_tensor(wr, s, p + "ffn_gate.weight", {e, s.n_ff}, L.wg);
      add_tensor(wr, s, p + "ffn_up.weight", {e, s.n_ff}, L.wu);
      add_tensor(wr, s, p + "ffn_down.weight", {s.n_ff, e}, L.wd);
    }
  }
  t.bytes = wr.to_bytes();
  return t;
}

void write_hf_folder(const Tiny& t, const std::filesystem::path& dir, const HfFolderOptions& opt) {
  const TinySpec& s = t.spec;
  std::filesystem::create_directories(dir);
  nlohmann::ordered_json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"hidden_size", s.n_embd},
      {"intermediate_size", s.n_ff},
      {"num_hidden_layers", s.n_layer},
      {"num_attention_heads", s.n_head},
      {"num_key_value_heads", s.n_head_kv},
      {"max_position_embeddings", s.ctx},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", s.rope_base},
      {"vocab_size", s.n_vocab},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", "float32"},
  };
  if (!s.rope_scaling.empty()) config["rope_scaling"] = {{"rope_type", s.rope_scaling}, {"factor", s.rope_factor}};
  write_text(dir / "config.json", config.dump(2));

  const int64_t e = s.n_embd;
  const int64_t hd = s.n_embd / s.n_head;
  std::vector<StTensor> all;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    all.push_back({name, opt.dtype, std::move(shape), encode_floats(v, opt.dtype)});
  };
  add("model.embed_tokens.weight", {s.n_vocab, e}, t.w.embd);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const TinyWeights::Layer& L = t.w.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {e}, L.attn_norm);
    add(p + "self_attn.q_proj.weight", {s.n_head * hd, e}, L.wq);
    add(p + "self_attn.k_proj.weight", {s.n_head_kv * hd, e}, L.wk);
    add(p + "self_attn.v_proj.weight", {s.n_head_kv * hd, e}, L.wv);
    add(p + "self_attn.o_proj.weight", {e, s.n_head * hd}, L.wo);
    add(p + "post_attention_layernorm.weight", {e}, L.ffn_norm);
    add(p + "mlp.gate_proj.weight", {s.n_ff, e}, L.wg);
    add(p + "mlp.up_proj.weight", {s.n_ff, e}, L.wu);
    add(p + "mlp.down_proj.weight", {e, s.n_ff}, L.wd);
    // A buffer older checkpoints carry; readers ignore it.
    std::vector<float> inv_freq(static_cast<size_t>(hd / 2), 0.5f);
    all.push_back({p + "self_attn.rotary_emb.inv_freq", "F32", {hd / 2}, encode_floats(inv_freq, "F32")});
  }
  add("model.norm.weight", {e}, t.w.out_norm);
  if (!s.tied || opt.lm_head_when_tied) add("lm_head.weight", {s.n_vocab, e}, s.tied ? t.w.embd : t.w.out);

  if (opt.shards <= 1) {
    write_bytes(dir / "model.safetensors", safetensors_image(all, {{"format", "pt"}}));
    return;
  }
  // Round-robin over the shards, so that every shard holds parts of several layers.
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (int i = 0; i < opt.shards; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i + 1, opt.shards);
    std::vector<StTensor> part;
    for (size_t j = static_cast<size_t>(i); j < all.size(); j += static_cast<size_t>(opt.shards)) {
      part.push_back(all[j]);
      weight_map[all[j].name] = name;
    }
    write_bytes(dir / name, safetensors_image(part));
  }
  const nlohmann::ordered_json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  write_text(dir / "model.safetensors.index.json", index.dump(2));
}

int64_t tiny_head_dim(const TinySpec& s) { return s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head; }

TinySpec small_tiny_spec() {
  TinySpec s;
  s.n_embd = 32;
  s.n_head = 2;
  s.n_head_kv = 1;
  s.n_ff = 64;
  s.n_vocab = 40;
  s.ctx = 128;
  s.seed = 11;
  return s;
}

io::GgufFile tiny_llama_gguf(const TinySpec& spec) {
  Result<io::GgufFile> f = io::GgufFile::from_memory(make_tiny(spec).bytes, "tiny.gguf");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

gen::Vocab tiny_llama_vocab(const TinySpec& spec) {
  gen::Vocab v;
  for (int64_t i = 0; i < spec.n_vocab; ++i) v.tokens.push_back("t" + std::to_string(i) + " ");
  return v;
}

}  // namespace lutq::testing
