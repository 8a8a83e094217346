// Session tests on a tiny random Llama written with io::GgufWriter (as model/llama_test.cc does).
#include "gen/session.h"

#include <gtest/gtest.h>

#include <random>
#include <span>
#include <string>
#include <vector>

#include "io/gguf_file.h"
#include "io/gguf_writer.h"

namespace lutq::gen {
namespace {

constexpr int64_t kEmbd = 32, kHeads = 2, kHeadsKv = 1, kFf = 64, kVocab = 40, kLayers = 2, kCtx = 128;

void add_random(io::GgufWriter& wr, std::mt19937& rng, const std::string& name, std::vector<int64_t> dims,
                float scale, float mean = 0.0f) {
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(total));
  for (float& x : v) x = mean + scale * nd(rng);
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  ASSERT_TRUE(wr.add_tensor(name, std::move(dims), io::GgmlType::F32, std::span<const uint8_t>(p, v.size() * 4)).is_ok());
}

io::GgufFile tiny_gguf() {
  std::mt19937 rng(11);
  io::GgufWriter wr;
  const std::string a = "llama";
  EXPECT_TRUE(wr.add_string("general.architecture", a).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".context_length", kCtx).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".embedding_length", kEmbd).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".block_count", kLayers).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".feed_forward_length", kFf).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count", kHeads).is_ok());
  EXPECT_TRUE(wr.add_uint32(a + ".attention.head_count_kv", kHeadsKv).is_ok());
  EXPECT_TRUE(wr.add_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f).is_ok());
  const int64_t hd = kEmbd / kHeads;
  const float ke = 0.18f;
  add_random(wr, rng, "token_embd.weight", {kEmbd, kVocab}, 1.0f);
  add_random(wr, rng, "output.weight", {kEmbd, kVocab}, ke);
  add_random(wr, rng, "output_norm.weight", {kEmbd}, 0.1f, 1.0f);
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add_random(wr, rng, p + "attn_norm.weight", {kEmbd}, 0.1f, 1.0f);
    add_random(wr, rng, p + "attn_q.weight", {kEmbd, kHeads * hd}, ke);
    add_random(wr, rng, p + "attn_k.weight", {kEmbd, kHeadsKv * hd}, ke);
    add_random(wr, rng, p + "attn_v.weight", {kEmbd, kHeadsKv * hd}, ke);
    add_random(wr, rng, p + "attn_output.weight", {kHeads * hd, kEmbd}, ke);
    add_random(wr, rng, p + "ffn_norm.weight", {kEmbd}, 0.1f, 1.0f);
    add_random(wr, rng, p + "ffn_gate.weight", {kEmbd, kFf}, ke);
    add_random(wr, rng, p + "ffn_up.weight", {kEmbd, kFf}, ke);
    add_random(wr, rng, p + "ffn_down.weight", {kFf, kEmbd}, 0.125f);
  }
  Result<io::GgufFile> f = io::GgufFile::from_memory(wr.to_bytes(), "tiny.gguf");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

Vocab tiny_vocab() {
  Vocab v;
  for (int64_t i = 0; i < kVocab; ++i) v.tokens.push_back("t" + std::to_string(i) + " ");
  return v;
}

struct Fixture {
  ThreadPool pool{2};
  io::GgufFile gguf = tiny_gguf();
  model::Model model = std::move(*model::Model::load(gguf, model::LoadOptions{}, pool));
  Tokenizer tok{tiny_vocab()};
};

std::vector<int32_t> prompt(int n) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 7 + 3) % kVocab));
  return p;
}

TEST(SessionTest, GreedyGenerationIsDeterministic) {
  Fixture f;
  std::string text[2];
  std::vector<int32_t> ids[2];
  for (int run = 0; run < 2; ++run) {
    auto s = Session::create(f.model, f.tok, f.pool, 64);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    ASSERT_TRUE(s->prefill(prompt(10)).is_ok());
    Sampler greedy(SamplerOptions{0.0f, 0, 1.0f, 0});
    auto r = s->generate(12, greedy, [&](std::string_view piece) { text[run] += piece; });
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->reason, StopReason::kLength);
    EXPECT_EQ(r->tokens, 12);
    ids[run] = s->tokens();
  }
  EXPECT_EQ(text[0], text[1]);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(ids[0].size(), 22u);
  EXPECT_FALSE(text[0].empty());
}

TEST(SessionTest, ChunkedPrefillMatchesOneCall) {
  Fixture f;
  const std::vector<int32_t> p = prompt(37);
  auto a = Session::create(f.model, f.tok, f.pool, 64);
  auto b = Session::create(f.model, f.tok, f.pool, 64);
  ASSERT_TRUE(a->prefill(p, 1000).is_ok());
  ASSERT_TRUE(b->prefill(p, 5).is_ok());
  EXPECT_EQ(argmax(a->last_logits()), argmax(b->last_logits()));
  for (size_t i = 0; i < a->last_logits().size(); ++i) {
    EXPECT_NEAR(a->last_logits()[i], b->last_logits()[i], 1e-3);
  }
}

TEST(SessionTest, TruncateReusesPrefixAndContextFull) {
  Fixture f;
  auto s = Session::create(f.model, f.tok, f.pool, 16);
  const std::vector<int32_t> p = prompt(10);
  ASSERT_TRUE(s->prefill(p).is_ok());
  const std::vector<float> want = s->last_logits();
  std::vector<int32_t> q = p;
  q[8] = (q[8] + 1) % kVocab;
  EXPECT_EQ(s->common_prefix(q), 8);
  s->truncate(8);
  ASSERT_TRUE(s->prefill(std::span<const int32_t>(p).subspan(8)).is_ok());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(s->last_logits()[i], want[i], 1e-4);
  Sampler greedy(SamplerOptions{0.0f, 0, 1.0f, 0});
  auto r = s->generate(100, greedy, nullptr);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->reason, StopReason::kContextFull);
  EXPECT_FALSE(s->prefill(prompt(20)).is_ok());
}

TEST(SessionTest, Utf8BufferHoldsPartialCharacters) {
  Utf8Buffer b;
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(b.push("a" + euro.substr(0, 1)), "a");
  EXPECT_EQ(b.push(euro.substr(1, 1)), "");
  EXPECT_EQ(b.push(euro.substr(2) + "b"), euro + "b");
  EXPECT_EQ(b.push("\xF0\x9F"), "");
  EXPECT_EQ(b.flush(), "\xF0\x9F");
}

}  // namespace
}  // namespace lutq::gen
