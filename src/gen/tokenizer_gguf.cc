// Tokenizer::from_checkpoint: the llama.cpp conventions for tokenizer.ggml.* metadata.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "gen/tokenizer.h"
#include "io/checkpoint.h"

namespace lutq::gen {
namespace {

struct PreTokenizerName {
  std::string_view name;
  PreTokenizerKind kind;
  bool ignore_merges;
};

// tokenizer.ggml.pre names (llama.cpp) whose splitting is one of PreTokenizerKind. "default" (and
// a missing key) falls back to the GPT-2 rules; llama.cpp's own default adds a few more splits
// (runs of punctuation, 3-digit groups), so such old files may tokenize slightly differently.
constexpr std::array<PreTokenizerName, 20> kPreTokenizers = {{
    {"gpt-2", PreTokenizerKind::kGpt2, false},
    {"gpt2", PreTokenizerKind::kGpt2, false},
    {"mpt", PreTokenizerKind::kGpt2, false},
    {"olmo", PreTokenizerKind::kGpt2, false},
    {"jais", PreTokenizerKind::kGpt2, false},
    {"llama-bpe", PreTokenizerKind::kLlama3, true},
    {"llama3", PreTokenizerKind::kLlama3, true},
    {"llama-v3", PreTokenizerKind::kLlama3, true},
    {"dbrx", PreTokenizerKind::kLlama3, false},
    {"smaug-bpe", PreTokenizerKind::kLlama3, false},
    {"qwen2", PreTokenizerKind::kQwen2, false},
    {"stablelm2", PreTokenizerKind::kQwen2, false},
    {"smollm", PreTokenizerKind::kSmolLm, false},
    {"starcoder", PreTokenizerKind::kSmolLm, false},
    {"refact", PreTokenizerKind::kSmolLm, false},
    {"command-r", PreTokenizerKind::kSmolLm, false},
    {"codeshell", PreTokenizerKind::kSmolLm, false},
    {"exaone", PreTokenizerKind::kSmolLm, false},
    {"minerva-7b", PreTokenizerKind::kSmolLm, false},
    {"default", PreTokenizerKind::kGpt2, false},
}};

// Reads an optional key: leaves `out` alone when absent, fails when present with a wrong type.
Status read_optional_id(const io::Checkpoint& f, std::string_view key, int32_t& out) {
  if (!f.has(key)) return Status::ok();
  Result<int64_t> v = f.get_int(key);
  if (!v) return v.status();
  if (*v < INT32_MIN || *v > INT32_MAX) {
    return Status::invalid("tokenizer: " + std::string(key) + " = " + std::to_string(*v) + " out of range");
  }
  out = static_cast<int32_t>(*v);
  return Status::ok();
}

Status read_optional_bool(const io::Checkpoint& f, std::string_view key, bool& out) {
  if (!f.has(key)) return Status::ok();
  Result<bool> v = f.get_bool(key);
  if (!v) return v.status();
  out = *v;
  return Status::ok();
}

}  // namespace

Result<Tokenizer> Tokenizer::from_checkpoint(const io::Checkpoint& f) {
  Vocab v;
  Result<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model) return model.status();
  if (*model == "gpt2") {
    v.model = ModelKind::kBytePairEncoding;
  } else if (*model == "llama") {
    v.model = ModelKind::kSentencePiece;
  } else {
    return Status::unsupported("tokenizer: tokenizer.ggml.model '" + *model +
                               "' is not supported (only 'gpt2' byte-level BPE and 'llama' SentencePiece)");
  }

  Result<std::vector<std::string>> tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return tokens.status();
  v.tokens = std::move(*tokens);

  if (f.has("tokenizer.ggml.scores")) {
    Result<std::vector<float>> scores = f.get_float_array("tokenizer.ggml.scores");
    if (!scores) return scores.status();
    v.scores = std::move(*scores);
  }
  if (f.has("tokenizer.ggml.token_type")) {
    Result<std::vector<int64_t>> types = f.get_int_array("tokenizer.ggml.token_type");
    if (!types) return types.status();
    v.types.reserve(types->size());
    for (const int64_t t : *types) {
      if (t < 1 || t > 6) return Status::invalid("tokenizer: token type " + std::to_string(t) + " out of range 1..6");
      v.types.push_back(static_cast<TokenType>(t));
    }
  }

  // Defaults as in llama.cpp, then whatever the file says.
  if (v.model == ModelKind::kSentencePiece) {
    v.bos_id = 1;
    v.eos_id = 2;
    v.unknown_id = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else {
    v.add_space_prefix = false;
    Result<std::vector<std::string>> merges = f.get_string_array("tokenizer.ggml.merges");
    if (!merges) return merges.status();
    v.merges = std::move(*merges);
    std::string pre = "default";
    if (f.has("tokenizer.ggml.pre")) {
      Result<std::string> p = f.get_string("tokenizer.ggml.pre");
      if (!p) return p.status();
      pre = std::move(*p);
    }
    const auto it = std::find_if(kPreTokenizers.begin(), kPreTokenizers.end(),
                                 [&](const PreTokenizerName& n) { return n.name == pre; });
    if (it == kPreTokenizers.end()) {
      return Status::unsupported("tokenizer: pre-tokenizer '" + pre + "' is not supported");
    }
    v.pre_tokenizer = it->kind;
    v.ignore_merges = it->ignore_merges;
    v.add_bos = it->ignore_merges;  // llama.cpp: the Llama-3 family adds BOS by default
  }

  for (const auto& [key, id] : {std::pair<std::string_view, int32_t*>{"tokenizer.ggml.bos_token_id", &v.bos_id},
                                {"tokenizer.ggml.eos_token_id", &v.eos_id},
                                {"tokenizer.ggml.unknown_token_id", &v.unknown_id},
                                {"tokenizer.ggml.padding_token_id", &v.padding_id}}) {
    if (Status s = read_optional_id(f, key, *id); !s) return s;
  }
  for (const auto& [key, flag] : {std::pair<std::string_view, bool*>{"tokenizer.ggml.add_bos_token", &v.add_bos},
                                  {"tokenizer.ggml.add_eos_token", &v.add_eos}}) {
    if (Status s = read_optional_bool(f, key, *flag); !s) return s;
  }
  if (v.model == ModelKind::kSentencePiece) {
    if (Status s = read_optional_bool(f, "tokenizer.ggml.add_space_prefix", v.add_space_prefix); !s) return s;
  }
  if (f.has("tokenizer.chat_template")) {
    Result<std::string> t = f.get_string("tokenizer.chat_template");
    if (!t) return t.status();
    v.chat_template = std::move(*t);
  }
  // A vocabulary without a token for a default id simply has no such token.
  const auto n = static_cast<int64_t>(v.tokens.size());
  for (int32_t* id : {&v.bos_id, &v.eos_id, &v.unknown_id, &v.padding_id}) {
    if (*id >= n) *id = kNoToken;
  }
  if (v.bos_id == kNoToken) v.add_bos = false;
  if (v.eos_id == kNoToken) v.add_eos = false;
  return from_vocab(std::move(v));
}

}  // namespace lutq::gen
