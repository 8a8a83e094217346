// Tests of HfCheckpoint: the same tiny random Llama written as a Hugging Face folder (single file
// or sharded, F32/BF16) and as GGUF must load to the same model (logits agree), the Q/K
// permutation and name mapping must match llama.cpp's converter, config.json problems must be
// clear errors, and Llama-3.1 RoPE factors must be synthesized. Tokenizer tests live in
// hf_tokenizer_test.cc.
#include "io/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numbers>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "model/config.h"
#include "model/model.h"
#include "support/safetensors_writer.h"
#include "support/tiny_llama.h"

namespace lutq::io {
namespace {

namespace fs = std::filesystem;
using testing::HfFolderOptions;
using testing::make_tiny;
using testing::Tiny;
using testing::TinySpec;

// A fresh folder per test under the temp dir, removed at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& name) : path_(fs::temp_directory_path() / ("lutq_hf_" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

const std::vector<int32_t> kTokens = {3, 17, 42, 0, 49, 17, 8};

std::vector<float> logits_of(const Checkpoint& ck, ThreadPool& pool) {
  Result<model::Model> m = model::Model::load(ck, {}, pool);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  if (!m) return {};
  Result<std::unique_ptr<model::Memory>> cache = m->make_memory(32);
  EXPECT_TRUE(cache.is_ok());
  std::vector<float> logits(kTokens.size() * static_cast<size_t>(m->config().n_vocab));
  const Status s = m->forward(kTokens, 0, **cache, logits.data(), pool, model::LogitsMode::kAll);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return logits;
}

// Opens `dir` (or `path`) as an HF checkpoint and expects every GGUF tensor to dequantize to
// `dtype`-rounded GGUF values, and the model's logits to agree with the GGUF model's.
void expect_same_model(const Tiny& t, const std::string& path, const std::string& dtype) {
  Result<std::unique_ptr<Checkpoint>> hf = open_checkpoint(path);
  ASSERT_TRUE(hf.is_ok()) << hf.status().message();
  EXPECT_STREQ((*hf)->format_name(), "safetensors");
  Result<GgufFile> gguf = GgufFile::from_memory(t.bytes, "tiny.gguf");
  ASSERT_TRUE(gguf.is_ok()) << gguf.status().message();

  for (const TensorInfo& g : gguf->tensors()) {
    const TensorInfo* h = (*hf)->find_tensor(g.name);
    ASSERT_NE(h, nullptr) << "missing " << g.name;
    EXPECT_EQ(h->dims, g.dims) << g.name;
    Result<std::vector<float>> hv = (*hf)->dequantize(*h);
    Result<std::vector<float>> gv = gguf->dequantize(g);
    ASSERT_TRUE(hv.is_ok() && gv.is_ok()) << g.name << ": " << hv.status().message();
    const std::vector<float> want = testing::rounded_floats(*gv, dtype);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ((*hv)[i], want[i]) << g.name << " element " << i << " (row " << i / static_cast<size_t>(g.dims[0])
                                   << ")";
    }
  }
  if (dtype != "F32") return;
  ThreadPool pool(2);
  const std::vector<float> a = logits_of(**hf, pool);
  const std::vector<float> b = logits_of(*gguf, pool);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]) / std::max(1.0, std::abs(static_cast<double>(b[i])));
    if (d > worst) {
      worst = d;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, 1e-5) << "worst logit " << worst_i << ": HF " << a[worst_i] << " GGUF " << b[worst_i];
}

TEST(HfCheckpoint, TinyModelMatchesGguf) {
  TempDir dir("single");
  const Tiny t = make_tiny({});
  testing::write_hf_folder(t, dir.path());
  expect_same_model(t, dir.path().string(), "F32");
  expect_same_model(t, (dir.path() / "model.safetensors").string(), "F32");
}

TEST(HfCheckpoint, TiedMultiQueryAndLinearRopeMatchGguf) {
  TempDir dir("tied");
  TinySpec spec;
  spec.tied = true;
  spec.n_head_kv = 1;
  spec.rope_scaling = "linear";
  spec.rope_factor = 4.0f;
  spec.rope_base = 500000.0;
  const Tiny t = make_tiny(spec);
  testing::write_hf_folder(t, dir.path(), {.lm_head_when_tied = true});
  expect_same_model(t, dir.path().string(), "F32");
  Result<HfCheckpoint> hf = HfCheckpoint::open(dir.path().string());
  ASSERT_TRUE(hf.is_ok());
  EXPECT_EQ(hf->find_tensor("output.weight"), nullptr);  // tie_word_embeddings: lm_head unused
  Result<model::ModelConfig> c = model::ModelConfig::from_checkpoint(*hf);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_TRUE(c->tied_output);
  EXPECT_EQ(c->rope.scaling, model::RopeScalingType::kLinear);
  EXPECT_EQ(c->rope.linear_factor, 4.0);
}

TEST(HfCheckpoint, ShardedFolderMatchesGguf) {
  TempDir dir("sharded");
  const Tiny t = make_tiny({});
  testing::write_hf_folder(t, dir.path(), {.shards = 3});
  expect_same_model(t, dir.path().string(), "F32");
  expect_same_model(t, (dir.path() / "model.safetensors.index.json").string(), "F32");
  Result<HfCheckpoint> hf = HfCheckpoint::open(dir.path().string());
  ASSERT_TRUE(hf.is_ok());
  EXPECT_EQ(hf->num_shards(), 3u);
}

TEST(HfCheckpoint, Bf16AndF16WeightsDecode) {
  for (const char* dtype : {"BF16", "F16"}) {
    TempDir dir(std::string("half_") + dtype);
    const Tiny t = make_tiny({});
    testing::write_hf_folder(t, dir.path(), {.dtype = dtype});
    expect_same_model(t, dir.path().string(), dtype);
  }
}

TEST(HfCheckpoint, NamesBytesAndIgnoredTensors) {
  TempDir dir("names");
  const Tiny t = make_tiny({});
  testing::write_hf_folder(t, dir.path());
  Result<HfCheckpoint> hf = HfCheckpoint::open(dir.path().string());
  ASSERT_TRUE(hf.is_ok()) << hf.status().message();
  EXPECT_EQ(hf_to_gguf_tensor_name("model.layers.12.mlp.down_proj.weight"), "blk.12.ffn_down.weight");
  EXPECT_EQ(hf_to_gguf_tensor_name("model.layers.3.self_attn.q_proj.bias"), "blk.3.attn_q.bias");
  EXPECT_EQ(hf_to_gguf_tensor_name("model.layers.x.mlp.up_proj.weight"), "");
  EXPECT_EQ(hf_to_gguf_tensor_name("model.layers.01.mlp.up_proj.weight"), "");
  EXPECT_EQ(hf_to_gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq"), "");

  // Unknown tensors are listed under their own names; the model ignores them.
  EXPECT_NE(hf->find_tensor("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  const TensorInfo* q = hf->find_tensor("blk.1.attn_q.weight");
  const TensorInfo* v = hf->find_tensor("blk.1.attn_v.weight");
  ASSERT_TRUE(q != nullptr && v != nullptr);
  EXPECT_EQ(hf->source_name(*q), "model.layers.1.self_attn.q_proj.weight");
  EXPECT_TRUE(hf->tensor_bytes(*q).empty());  // permuted on dequantize
  const std::vector<uint8_t> wv = testing::encode_floats(t.w.layers[1].wv, "F32");
  const std::span<const uint8_t> got = hf->tensor_bytes(*v);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), wv.begin(), wv.end()));
  TensorInfo stranger = *v;
  stranger.dims[0] += 1;
  EXPECT_TRUE(hf->tensor_bytes(stranger).empty());
  EXPECT_FALSE(hf->dequantize(stranger).is_ok());
  EXPECT_EQ(hf->get_string("general.architecture").value(), "llama");
  EXPECT_EQ(hf->get_int("llama.block_count").value(), 2);
  EXPECT_EQ(hf->get_string("general.name").value(), "lutq_hf_names");  // the folder's name
}

// Writes a valid tiny folder, then lets `edit` change config.json (as JSON text edits).
std::string open_error(const std::string& name, const std::string& config_find, const std::string& config_replace,
                       const HfFolderOptions& opt = {}) {
  TempDir dir("err_" + name);
  testing::write_hf_folder(make_tiny({}), dir.path(), opt);
  std::ifstream in(dir.path() / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!config_find.empty()) {
    const size_t at = text.find(config_find);
    EXPECT_NE(at, std::string::npos) << config_find;
    if (at != std::string::npos) text.replace(at, config_find.size(), config_replace);
  }
  testing::write_text(dir.path() / "config.json", text);
  Result<std::unique_ptr<Checkpoint>> ck = open_checkpoint(dir.path().string());
  if (!ck) return ck.status().message();
  ThreadPool pool(1);
  Result<model::Model> m = model::Model::load(**ck, {}, pool);
  return m ? "(ok)" : m.status().message();
}

TEST(HfCheckpoint, ConfigProblemsAreClearErrors) {
  EXPECT_EQ(open_error("fine", "", ""), "(ok)");
  std::string msg = open_error("arch", "\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"");
  EXPECT_NE(msg.find("unsupported architectures [\"GPT2LMHeadModel\"] (supported: LlamaForCausalLM, "
                     "MistralForCausalLM)"),
            std::string::npos)
      << msg;
  msg = open_error("type", "\"llama\"", "\"qwen2\"");
  EXPECT_NE(msg.find("unsupported model_type 'qwen2' (supported: llama, mistral)"), std::string::npos) << msg;
  msg = open_error("missing", "\"hidden_size\"", "\"hidden_sizes\"");
  EXPECT_NE(msg.find("config.json: required field 'hidden_size' is missing"), std::string::npos) << msg;
  msg = open_error("type_field", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"2\"");
  EXPECT_NE(msg.find("field 'num_hidden_layers' = \"2\" must be a positive integer"), std::string::npos) << msg;
  msg = open_error("act", "\"silu\"", "\"gelu\"");
  EXPECT_NE(msg.find("hidden_act 'gelu' is not supported"), std::string::npos) << msg;
  msg = open_error("bias", "\"silu\"", "\"silu\", \"attention_bias\": true");
  EXPECT_NE(msg.find("attention_bias = true"), std::string::npos) << msg;
  msg = open_error("heads", "\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
  EXPECT_NE(msg.find("q_proj.weight' has shape [64, 64]: its 64 rows do not split into 3 heads"), std::string::npos)
      << msg;
  msg = open_error("yarn", "\"silu\"", "\"silu\", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}");
  EXPECT_NE(msg.find("unsupported RoPE scaling type 'yarn'"), std::string::npos) << msg;
  msg = open_error("json", "{", "{,");
  EXPECT_NE(msg.find("config.json: bad JSON"), std::string::npos) << msg;
}

TEST(HfCheckpoint, FolderAndShardProblemsAreClearErrors) {
  TempDir dir("files");
  Result<HfCheckpoint> r = HfCheckpoint::open(dir.path().string());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("neither model.safetensors nor model.safetensors.index.json"),
            std::string::npos);

  testing::write_hf_folder(make_tiny({}), dir.path(), {.shards = 2});
  const fs::path index = dir.path() / "model.safetensors.index.json";
  const auto with_index = [&](const std::string& text) {
    testing::write_text(index, text);
    Result<HfCheckpoint> c = HfCheckpoint::open(dir.path().string());
    return c ? std::string("(ok)") : c.status().message();
  };
  EXPECT_NE(with_index(R"({"weight_map": {"model.norm.weight": "../model-00001-of-00002.safetensors"}})")
                .find("is not a plain file name"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"model.norm.weight": "gone.safetensors"}})").find("gone.safetensors"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"no.such.weight": "model-00001-of-00002.safetensors"}})")
                .find("has no tensor 'no.such.weight' although the index names this file for it"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weights": {}})").find("missing object 'weight_map'"), std::string::npos);

  testing::write_hf_folder(make_tiny({}), dir.path(), {.shards = 2});  // a valid index again
  fs::remove(dir.path() / "config.json");
  Result<HfCheckpoint> noconf = HfCheckpoint::open(dir.path().string());
  ASSERT_FALSE(noconf.is_ok());
  EXPECT_NE(noconf.status().message().find("config.json: not found"), std::string::npos) << noconf.status().message();

  TempDir dt("dtype");
  testing::write_text(dt.path() / "config.json", R"({"model_type": "llama", "hidden_size": 4, "num_hidden_layers": 1,
      "intermediate_size": 8, "num_attention_heads": 1})");
  testing::write_bytes(dt.path() / "model.safetensors",
                       testing::safetensors_image({{"model.norm.weight", "I32", {4}, std::vector<uint8_t>(16, 0)}}));
  Result<HfCheckpoint> bad = HfCheckpoint::open(dt.path().string());
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("tensor 'model.norm.weight' has unsupported dtype I32 (supported: F32, F16, BF16)"),
            std::string::npos)
      << bad.status().message();
}

TEST(HfCheckpoint, Llama3RopeScalingSynthesizesFrequencyFactors) {
  TempDir dir("llama3");
  TinySpec spec;
  spec.rope_base = 500000.0;
  const Tiny t = make_tiny(spec);
  testing::write_hf_folder(t, dir.path());
  std::ifstream in(dir.path() / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("\"silu\""), 6,
               R"("silu", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64})");
  testing::write_text(dir.path() / "config.json", text);
  Result<HfCheckpoint> hf = HfCheckpoint::open(dir.path().string());
  ASSERT_TRUE(hf.is_ok()) << hf.status().message();
  const TensorInfo* f = hf->find_tensor("rope_freqs.weight");
  ASSERT_NE(f, nullptr);
  Result<std::vector<float>> got = hf->dequantize(*f);
  ASSERT_TRUE(got.is_ok());
  // head_dim 16: wavelengths 2π·500000^(i/16); with an original context of 64 they span all
  // three bands (< 16: 1, > 64: 8, between: smoothed).
  ASSERT_EQ(got->size(), 8u);
  int bands[3] = {0, 0, 0};
  for (size_t i = 0; i < got->size(); ++i) {
    const double wavelen = 2.0 * std::numbers::pi * std::pow(500000.0, static_cast<double>(2 * i) / 16.0);
    double want = 0.0;
    if (wavelen < 64.0 / 4.0) {
      want = 1.0;
      ++bands[0];
    } else if (wavelen > 64.0 / 1.0) {
      want = 8.0;
      ++bands[2];
    } else {
      const double smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = 1.0 / ((1.0 - smooth) / 8.0 + smooth);
      ++bands[1];
    }
    EXPECT_NEAR((*got)[i], want, 1e-5 * want) << "pair " << i;
  }
  EXPECT_TRUE(bands[0] > 0 && bands[1] > 0 && bands[2] > 0) << bands[0] << " " << bands[1] << " " << bands[2];
  Result<model::ModelConfig> c = model::ModelConfig::from_checkpoint(*hf);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->rope.scaling, model::RopeScalingType::kFreqFactors);
}

TEST(HfCheckpoint, MistralSlidingWindowCapsTheContext) {
  TempDir dir("mistral");
  testing::write_hf_folder(make_tiny({}), dir.path());
  std::ifstream in(dir.path() / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("\"llama\""), 7, R"("mistral", "sliding_window": 32)");
  testing::write_text(dir.path() / "config.json", text);
  Result<HfCheckpoint> hf = HfCheckpoint::open(dir.path().string());
  ASSERT_TRUE(hf.is_ok()) << hf.status().message();
  EXPECT_EQ(hf->get_int("llama.context_length").value(), 32);
}

}  // namespace
}  // namespace lutq::io
