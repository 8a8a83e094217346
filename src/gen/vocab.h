// The plain description of a tokenizer vocabulary, independent of the file it came from (GGUF
// metadata today, a Hugging Face tokenizer.json reader later). Tokenizer is built from it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lutq::gen {

// tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece with byte fallback).
enum class ModelKind { kBytePairEncoding, kSentencePiece };

// tokenizer.ggml.pre: how byte-level BPE splits text into words before merging. Ignored by
// SentencePiece.
enum class PreTokenizerKind {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kLlama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kQwen2,   // as kLlama3 with \p{N} (single digits) instead of \p{N}{1,3}
  kSmolLm,  // every \p{N} on its own first, then kGpt2 within the rest
};

// tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

inline constexpr int32_t kNoToken = -1;

struct Vocab {
  ModelKind model = ModelKind::kBytePairEncoding;
  PreTokenizerKind pre_tokenizer = PreTokenizerKind::kGpt2;
  std::vector<std::string> tokens;  // token id -> text (byte-level BPE: GPT-2 mapped text)
  std::vector<float> scores;        // SentencePiece merge priorities; empty = all 0
  std::vector<TokenType> types;     // empty = all kNormal
  std::vector<std::string> merges;  // BPE merges "left right", rank = index
  int32_t bos_id = kNoToken;
  int32_t eos_id = kNoToken;
  int32_t unknown_id = kNoToken;
  int32_t padding_id = kNoToken;
  bool add_bos = false;           // encode(add_special = true) prepends bos_id
  bool add_eos = false;           // encode(add_special = true) appends eos_id
  bool add_space_prefix = true;   // SentencePiece: a text run starts with "▁" (dummy prefix)
  bool ignore_merges = false;     // BPE: a word that is a whole token skips merging (Llama-3)
  std::string chat_template;      // tokenizer.chat_template source, if any
};

// Hash for heterogeneous lookup of std::string keys by std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

}  // namespace lutq::gen
