// Model configuration from GGUF metadata: shapes, architecture traits, and clear errors for
// unsupported or malformed models.
#include <gtest/gtest.h>

#include <string>

#include "model/config.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

using testing::load_error;
using testing::make_tiny;
using testing::open_tiny;
using testing::Tiny;
using testing::TinySpec;

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

}  // namespace
}  // namespace lutq::model
