// Every architecture's forward pass on tiny random models against the independent double-precision
// reference (tests/support/reference_forward.h). For llama the GGUF file gets the Q/K rows permuted
// the way llama.cpp's converter permutes them, so agreement also checks that the runtime's
// adjacent-pair RoPE matches GGUF's convention; qwen2/qwen3 files keep Hugging Face's order and
// the runtime's NeoX pairing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "support/reference_forward.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

using testing::load_tiny;
using testing::make_tiny;
using testing::open_tiny;
using testing::prefill_all;
using testing::reference_logits;
using testing::Tiny;
using testing::TinySpec;

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8};

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

}  // namespace
}  // namespace lutq::model
