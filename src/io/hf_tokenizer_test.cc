// Tests of the tokenizer.json -> tokenizer.ggml.* translation: llama.cpp's reference vocabularies
// (ggml-vocab-*.gguf in the shared data) re-expressed as tokenizer.json must give the same
// metadata and the same ids on the reference strings; a hand-made tokenizer checks token types,
// padding, special ids, add_bos and the chat template; unsupported tokenizers are clear errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "io/gguf_file.h"
#include "io/gguf_test_util.h"
#include "io/hf_checkpoint.h"
#include "io/hf_metadata.h"
#include "support/safetensors_writer.h"
#include "support/tiny_llama.h"

namespace lutq::io {
namespace {

namespace fs = std::filesystem;

// A checkpoint of metadata only, to feed gen::Tokenizer::from_checkpoint.
class MetadataCheckpoint final : public Checkpoint {
 public:
  explicit MetadataCheckpoint(MetadataList kv) : kv_(std::move(kv)) {}
  const std::string& path() const override { return path_; }
  const char* format_name() const override { return "test"; }
  const GgufValue* find(std::string_view key) const override {
    for (const auto& [k, v] : kv_) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  std::vector<std::string> keys() const override {
    std::vector<std::string> out;
    for (const auto& kv : kv_) out.push_back(kv.first);
    return out;
  }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* find_tensor(std::string_view) const override { return nullptr; }
  std::span<const uint8_t> tensor_bytes(const TensorInfo&) const override { return {}; }
  Result<std::vector<float>> dequantize(const TensorInfo&) const override { return Status::invalid("none"); }

 private:
  std::string path_ = "meta";
  MetadataList kv_;
  std::vector<TensorInfo> tensors_;
};

// The pre-tokenizer regexes as tokenizer.json files spell them (written out independently of
// hf_metadata.h's constants).
const std::map<std::string, std::string>& hf_regexes() {
  static const std::map<std::string, std::string> m = {
      {"llama-bpe",
       R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
      {"qwen2",
       R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
  };
  return m;
}

HfJson byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// tokenizer.json + tokenizer_config.json for a GGUF byte-level BPE vocabulary, the way Hugging
// Face stores it: normal tokens in model.vocab, control/user-defined ones in added_tokens; merges
// alternate between the "a b" and ["a", "b"] forms.
std::pair<HfJson, HfJson> to_tokenizer_json(const GgufFile& g) {
  const std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens").value();
  const std::vector<int64_t> types = g.get_int_array("tokenizer.ggml.token_type").value();
  const std::vector<std::string> merges = g.get_string_array("tokenizer.ggml.merges").value();
  const std::string pre = g.get_string("tokenizer.ggml.pre").value();
  HfJson vocab = HfJson::object();
  HfJson added = HfJson::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] == 3 || types[i] == 4) {
      added.push_back({{"id", i}, {"content", tokens[i]}, {"special", types[i] == 3}});
    } else {
      vocab[tokens[i]] = i;
    }
  }
  HfJson m = HfJson::array();
  for (size_t i = 0; i < merges.size(); ++i) {
    const size_t sp = merges[i].find(' ', 1);
    if (i % 2 == 0) {
      m.push_back(merges[i]);
    } else {
      m.push_back({merges[i].substr(0, sp), merges[i].substr(sp + 1)});
    }
  }
  HfJson model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
                  {"ignore_merges", pre == "llama-bpe"}, {"vocab", vocab}, {"merges", m}};
  HfJson pre_tok;
  if (pre == "gpt-2") {
    pre_tok = byte_level(true);
  } else {
    HfJson split = {{"type", "Split"}, {"pattern", {{"Regex", hf_regexes().at(pre)}}}, {"behavior", "Isolated"},
                    {"invert", false}};
    pre_tok = {{"type", "Sequence"}, {"pretokenizers", {split, byte_level(false)}}};
  }
  HfJson tok = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", pre_tok},
                {"post_processor", byte_level(true)}, {"decoder", byte_level(true)}, {"model", model}};
  if (pre == "qwen2") tok["normalizer"] = {{"type", "NFC"}};
  HfJson config = HfJson::object();
  for (const auto& [hf, key] : {std::pair<std::string, std::string>{"bos_token", "tokenizer.ggml.bos_token_id"},
                                {"eos_token", "tokenizer.ggml.eos_token_id"}}) {
    if (g.has(key)) config[hf] = tokens[static_cast<size_t>(g.get_int(key).value())];
  }
  config["add_bos_token"] = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token").value()
                                                                   : pre == "llama-bpe";
  return {tok, config};
}

std::vector<std::string> test_strings(const fs::path& inp) {
  std::ifstream in(inp, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string raw = ss.str();
  std::vector<std::string> out;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    out.push_back(raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  return out;
}

void check_vocab(const std::string& name) {
  const std::optional<fs::path> shared = test_support::shared_dir();
  if (!shared) GTEST_SKIP() << "tokenizer test data not found (set LUTQ_SHARED_DIR or provide ../shared/data)";
  const fs::path base = *shared / "data" / "tokenizer" / ("ggml-vocab-" + name + ".gguf");
  Result<GgufFile> g = GgufFile::open(base.string());
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  const auto [tok_json, tok_config] = to_tokenizer_json(*g);
  MetadataList kv;
  const Status s = hf_tokenizer_to_gguf(tok_json, tok_config, HfJson(), 0, "", "mem", kv);
  ASSERT_TRUE(s.is_ok()) << s.message();
  const MetadataCheckpoint hf(std::move(kv));
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
    EXPECT_EQ(hf.get_string_array(key).value(), g->get_string_array(key).value()) << key;
  }
  EXPECT_EQ(hf.get_int_array("tokenizer.ggml.token_type").value(), g->get_int_array("tokenizer.ggml.token_type").value());
  const std::string want_pre = g->get_string("tokenizer.ggml.pre").value();
  EXPECT_EQ(hf.get_string("tokenizer.ggml.pre").value(), want_pre);

  Result<gen::Tokenizer> a = gen::Tokenizer::from_checkpoint(hf);
  Result<gen::Tokenizer> b = gen::Tokenizer::from_checkpoint(*g);
  ASSERT_TRUE(a.is_ok() && b.is_ok()) << a.status().message();
  const std::vector<std::string> texts = test_strings(base.string() + ".inp");
  ASSERT_GT(texts.size(), 10u);
  for (const std::string& t : texts) {
    for (bool special : {false, true}) {
      ASSERT_EQ(a->encode(t, special, special), b->encode(t, special, special)) << "'" << t << "' special " << special;
    }
  }
  EXPECT_EQ(a->vocab().bos_id, b->vocab().bos_id);
  EXPECT_EQ(a->vocab().eos_id, b->vocab().eos_id);
}

TEST(HfTokenizer, Gpt2VocabMatchesGguf) { check_vocab("gpt-2"); }
TEST(HfTokenizer, Llama3VocabMatchesGguf) { check_vocab("llama-bpe"); }
TEST(HfTokenizer, Qwen2VocabMatchesGguf) { check_vocab("qwen2"); }

// A SmolLM2-like tokenizer: single digits, merges as pairs, ChatML control tokens.
HfJson small_tokenizer() {
  HfJson vocab = HfJson::object();
  const std::vector<std::string> base = {"h", "e", "l", "o", "Ġ", "w", "r", "d", "1", "2", "he", "ll", "hell", "hello",
                                         "Ġw", "Ġwor", "or", "ld", "Ġworld", "wor"};
  for (size_t i = 0; i < base.size(); ++i) vocab[base[i]] = i + 3;
  HfJson merges = HfJson::array({HfJson::array({"h", "e"}), HfJson::array({"l", "l"}), HfJson::array({"he", "ll"}),
                                 HfJson::array({"hell", "o"}), HfJson::array({"Ġ", "w"}), HfJson::array({"o", "r"}),
                                 HfJson::array({"l", "d"}), HfJson::array({"Ġw", "or"}), HfJson::array({"Ġwor", "ld"})});
  HfJson added = HfJson::array(
      {{{"id", 0}, {"content", "<|endoftext|>"}, {"special", true}},
       {{"id", 1}, {"content", "<|im_start|>"}, {"special", true}},
       {{"id", 2}, {"content", "<|im_end|>"}, {"special", true}},
       {{"id", 23}, {"content", "<custom>"}, {"special", false}}});
  HfJson pre = {{"type", "Sequence"},
                {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  return {{"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", pre},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(HfTokenizer, SmallTokenizerThroughAnHfFolder) {
  const fs::path dir = fs::temp_directory_path() / "lutq_hf_tokenizer";
  fs::remove_all(dir);
  testing::TinySpec spec;
  spec.n_vocab = 30;
  testing::write_hf_folder(testing::make_tiny(spec), dir);
  testing::write_text(dir / "tokenizer.json", small_tokenizer().dump());
  testing::write_text(dir / "tokenizer_config.json",
                      R"({"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|im_end|>",
                          "add_bos_token": false, "chat_template": "{% for m in messages %}x{% endfor %}"})");
  Result<std::unique_ptr<Checkpoint>> ck = open_checkpoint(dir.string());
  ASSERT_TRUE(ck.is_ok()) << ck.status().message();
  const Checkpoint& c = **ck;
  EXPECT_EQ(c.get_string("tokenizer.ggml.pre").value(), "smollm");
  const std::vector<std::string> tokens = c.get_string_array("tokenizer.ggml.tokens").value();
  ASSERT_EQ(tokens.size(), 30u);  // padded to vocab_size
  EXPECT_EQ(tokens[29], "[PAD29]");
  const std::vector<int64_t> types = c.get_int_array("tokenizer.ggml.token_type").value();
  EXPECT_EQ(types[0], 3);   // special added token: control
  EXPECT_EQ(types[23], 4);  // non-special added token: user-defined
  EXPECT_EQ(types[5], 1);
  EXPECT_EQ(types[29], 5);  // padding: unused
  EXPECT_EQ(c.get_string_array("tokenizer.ggml.merges").value()[8], "Ġwor ld");
  EXPECT_EQ(c.get_int("tokenizer.ggml.bos_token_id").value(), 1);
  EXPECT_EQ(c.get_int("tokenizer.ggml.eos_token_id").value(), 2);
  EXPECT_FALSE(c.get_bool("tokenizer.ggml.add_bos_token").value());
  EXPECT_EQ(c.get_string("tokenizer.chat_template").value(), "{% for m in messages %}x{% endfor %}");

  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(c);
  ASSERT_TRUE(tok.is_ok()) << tok.status().message();
  // "hello world12": hello | Ġworld | 1 | 2; the control token parses as one id.
  EXPECT_EQ(tok->encode("<|im_start|>hello world12", false, true), (std::vector<int32_t>{1, 16, 21, 11, 12}));
  EXPECT_EQ(tok->decode(tok->encode("hello world12", false, false)), "hello world12");
  fs::remove_all(dir);
}

// Llama 3 states add_bos only in its post-processor: Sequence [ByteLevel, TemplateProcessing].
TEST(HfTokenizer, AddBosFromThePostProcessorTemplate) {
  HfJson t = small_tokenizer();
  const HfJson bos = {{"SpecialToken", {{"id", "<|im_start|>"}, {"type_id", 0}}}};
  const HfJson seq = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  t["post_processor"] = {{"type", "Sequence"},
                         {"processors", {byte_level(false), {{"type", "TemplateProcessing"}, {"single", {bos, seq}}}}}};
  for (const bool in_config : {false, true}) {
    HfJson config = {{"bos_token", "<|im_start|>"}};
    if (in_config) config["add_bos_token"] = false;  // tokenizer_config.json wins
    MetadataList kv;
    ASSERT_TRUE(hf_tokenizer_to_gguf(t, config, HfJson(), 0, "", "dir", kv).is_ok());
    const MetadataCheckpoint c(std::move(kv));
    EXPECT_EQ(c.get_bool("tokenizer.ggml.add_bos_token").value(), !in_config);
    EXPECT_FALSE(c.get_bool("tokenizer.ggml.add_eos_token").value());
    EXPECT_EQ(c.get_int("tokenizer.ggml.bos_token_id").value(), 1);
  }
}

TEST(HfTokenizer, UnsupportedTokenizersAreClearErrors) {
  const auto error = [](HfJson tok) {
    MetadataList kv;
    const Status s = hf_tokenizer_to_gguf(tok, HfJson(), HfJson(), 0, "", "dir", kv);
    return s ? std::string("(ok)") : s.message();
  };
  EXPECT_EQ(error(small_tokenizer()), "(ok)");
  HfJson t = small_tokenizer();
  t["model"]["type"] = "Unigram";
  EXPECT_NE(error(t).find("dir/tokenizer.json: model type 'Unigram' is not supported"), std::string::npos) << error(t);
  t = small_tokenizer();
  t["model"]["byte_fallback"] = true;
  EXPECT_NE(error(t).find("byte_fallback"), std::string::npos);
  t = small_tokenizer();
  t["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_NE(error(t).find("unknown pre_tokenizer {\"type\":\"Whitespace\"}"), std::string::npos) << error(t);
  t = small_tokenizer();
  t["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true;
  EXPECT_NE(error(t).find("unknown pre_tokenizer"), std::string::npos);
  t = small_tokenizer();
  t["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_NE(error(t).find("normalizer 'Lowercase'"), std::string::npos);
  t = small_tokenizer();
  t["model"]["merges"].push_back(7);
  EXPECT_NE(error(t).find("model.merges entry 7"), std::string::npos);
  t = small_tokenizer();
  t["model"]["vocab"]["dup"] = 3;
  EXPECT_NE(error(t).find("gives id 3 to two tokens"), std::string::npos);
  t = small_tokenizer();
  t["model"]["vocab"]["far"] = 1u << 30;
  EXPECT_NE(error(t).find("is not a token id"), std::string::npos);
  t = small_tokenizer();
  t["added_tokens"].push_back({{"id", -1}, {"content", "x"}});
  EXPECT_NE(error(t).find("needs an integer 'id'"), std::string::npos);
  MetadataList kv;
  EXPECT_NE(hf_tokenizer_to_gguf(small_tokenizer(), HfJson(), HfJson(), 10, "", "dir", kv).message().find(
                "token id 23 does not fit config.json vocab_size 10"),
            std::string::npos);
}

}  // namespace
}  // namespace lutq::io
