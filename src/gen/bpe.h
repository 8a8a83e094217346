// Byte-level BPE (GPT-2 style): bytes are mapped to printable code points (GPT-2's
// bytes_to_unicode), words from the pre-tokenizer are merged pair by pair, lowest merge rank
// first (leftmost on ties), with a priority queue over adjacent symbol pairs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gen/vocab.h"

namespace lutq::gen {

// GPT-2's byte -> code point mapping, as UTF-8 strings.
const std::array<std::string, 256>& byte_level_chars();

// Inverse of byte_level_chars over a token text: appends the original bytes. Code points outside
// the mapping are copied through as UTF-8.
void byte_level_decode(std::string_view token_text, std::string& out);

class BpeEncoder {
 public:
  BpeEncoder() = default;
  // token_map maps every token text of vocab to its id. Malformed merges (no separating space)
  // are skipped; duplicates keep their lowest rank.
  BpeEncoder(const Vocab& vocab, const TokenMap& token_map);

  // Pre-tokenizes text with vocab's pre-tokenizer and appends the token ids of every word.
  void encode(std::string_view text, const TokenMap& token_map, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;  // symbol id of the merged pair
  };
  struct Symbol {
    int32_t id;  // symbol id: a token id, or >= vocab size for strings that are no token
    int32_t prev;
    int32_t next;
    uint32_t begin;  // byte offset in the word
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
  };
  struct Scratch {
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string mapped;
  };

  // Heap order: lowest rank first, then leftmost.
  static bool later(const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void encode_word(std::string_view word, const TokenMap& token_map, Scratch& scratch,
                   std::vector<int32_t>& out) const;
  void push_candidate(Scratch& scratch, int32_t left, int32_t right) const;
  void emit_bytes(std::string_view bytes, std::vector<int32_t>& out) const;

  PreTokenizerKind pre_tokenizer_ = PreTokenizerKind::kGpt2;
  bool ignore_merges_ = false;
  int32_t vocab_size_ = 0;
  std::array<int32_t, 256> byte_symbol_{};  // symbol id of each byte's mapped character
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace lutq::gen
