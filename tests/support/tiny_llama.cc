// Builders of tiny_llama.h.
#include "support/tiny_llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf_writer.h"

namespace lutq::testing {
namespace {

void add_random(io::GgufWriter& wr, std::mt19937& rng, const std::string& name, std::vector<int64_t> dims,
                float scale, float mean = 0.0f) {
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(total));
  for (float& x : v) x = mean + scale * nd(rng);
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  EXPECT_TRUE(wr.add_tensor(name, std::move(dims), io::GgmlType::F32, std::span<const uint8_t>(p, v.size() * 4)).is_ok());
}

}  // namespace

io::GgufFile tiny_llama_gguf(const TinyLlamaSpec& s) {
  std::mt19937 rng(s.seed);
  io::GgufWriter wr;
  const std::string a = "llama";
  EXPECT_TRUE(wr.add_string("general.architecture", a).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".context_length", static_cast<uint32_t>(s.ctx)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".block_count", static_cast<uint32_t>(s.n_layer)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head)).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv)).is_ok());
  EXPECT_TRUE(wr.add_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f).is_ok());
  const int64_t e = s.n_embd;
  const int64_t hd = e / s.n_head;
  const float ke = 1.0f / std::sqrt(static_cast<float>(e));
  add_random(wr, rng, "token_embd.weight", {e, s.n_vocab}, 1.0f);
  add_random(wr, rng, "output.weight", {e, s.n_vocab}, ke);
  add_random(wr, rng, "output_norm.weight", {e}, 0.1f, 1.0f);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add_random(wr, rng, p + "attn_norm.weight", {e}, 0.1f, 1.0f);
    add_random(wr, rng, p + "attn_q.weight", {e, s.n_head * hd}, ke);
    add_random(wr, rng, p + "attn_k.weight", {e, s.n_head_kv * hd}, ke);
    add_random(wr, rng, p + "attn_v.weight", {e, s.n_head_kv * hd}, ke);
    add_random(wr, rng, p + "attn_output.weight", {s.n_head * hd, e}, ke);
    add_random(wr, rng, p + "ffn_norm.weight", {e}, 0.1f, 1.0f);
    add_random(wr, rng, p + "ffn_gate.weight", {e, s.n_ff}, ke);
    add_random(wr, rng, p + "ffn_up.weight", {e, s.n_ff}, ke);
    add_random(wr, rng, p + "ffn_down.weight", {s.n_ff, e}, 1.0f / std::sqrt(static_cast<float>(s.n_ff)));
  }
  Result<io::GgufFile> f = io::GgufFile::from_memory(wr.to_bytes(), "tiny.gguf");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

gen::Vocab tiny_llama_vocab(const TinyLlamaSpec& s) {
  gen::Vocab v;
  for (int64_t i = 0; i < s.n_vocab; ++i) v.tokens.push_back("t" + std::to_string(i) + " ");
  return v;
}

}  // namespace lutq::testing
