// SentencePiece-style BPE (Llama-2): the text is split into UTF-8 characters, then the adjacent
// pair whose concatenation is the vocabulary token with the highest score is merged, again and
// again (llama.cpp's llm_tokenizer_spm bigram algorithm). Characters left that are no token are
// written as byte tokens <0xXX>.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gen/vocab.h"

namespace lutq::gen {

class SpmEncoder {
 public:
  SpmEncoder() = default;
  SpmEncoder(const Vocab& vocab, const TokenMap& token_map);

  // text must already be escaped: spaces replaced by U+2581, the dummy prefix added.
  void encode(std::string_view text, const TokenMap& token_map, std::vector<int32_t>& out) const;

 private:
  struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t begin;  // byte offset in text
    uint32_t size;   // bytes; 0 once merged into the symbol on its left
  };
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;  // bytes of the merged pair when it was queued
  };
  // Heap order: highest score first, then leftmost.
  static bool later(const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
  void encode_segment(std::string_view text, const TokenMap& token_map, std::vector<int32_t>& out) const;
  void push_bigram(std::string_view text, const TokenMap& token_map, const std::vector<Symbol>& symbols,
                   std::vector<Bigram>& heap, int32_t left, int32_t right) const;

  std::vector<float> scores_;
  std::vector<uint8_t> mergeable_;  // 1 for tokens the merges may form (normal, user-defined)
  std::array<int32_t, 256> byte_tokens_{};  // <0xXX>, else the byte itself, else unknown/-1
  // No mergeable token has a "▁" after another character, so no merge crosses the start of a
  // "▁" run: the text can be merged word by word (same result, far less work on long texts).
  bool split_words_ = false;
};

}  // namespace lutq::gen
