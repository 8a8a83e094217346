#include "gen/bpe.h"

#include <algorithm>
#include <utility>

#include "gen/pre_tokenizer.h"
#include "gen/unicode.h"

namespace lutq::gen {
namespace {

// GPT-2 bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order.
std::array<uint32_t, 256> byte_level_code_points() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    map[b] = printable ? b : next++;
  }
  return map;
}

constexpr int32_t kDeadSymbol = -2;

}  // namespace

const std::array<std::string, 256>& byte_level_chars() {
  static const std::array<std::string, 256> kChars = [] {
    std::array<std::string, 256> chars;
    const std::array<uint32_t, 256> cps = byte_level_code_points();
    for (size_t b = 0; b < 256; ++b) append_utf8(chars[b], cps[b]);
    return chars;
  }();
  return kChars;
}

void byte_level_decode(std::string_view token_text, std::string& out) {
  static const std::array<int16_t, 324> kInverse = [] {
    std::array<int16_t, 324> inverse;
    inverse.fill(-1);
    const std::array<uint32_t, 256> cps = byte_level_code_points();
    for (size_t b = 0; b < 256; ++b) inverse[cps[b]] = static_cast<int16_t>(b);
    return inverse;
  }();
  for (size_t pos = 0; pos < token_text.size();) {
    const CodePoint cp = decode_utf8(token_text, pos);
    if (cp.valid && cp.value < kInverse.size() && kInverse[cp.value] >= 0) {
      out.push_back(static_cast<char>(kInverse[cp.value]));
    } else {
      out.append(token_text.substr(pos, cp.size));
    }
    pos += cp.size;
  }
}

BpeEncoder::BpeEncoder(const Vocab& vocab, const TokenMap& token_map)
    : pre_tokenizer_(vocab.pre_tokenizer),
      ignore_merges_(vocab.ignore_merges),
      vocab_size_(static_cast<int32_t>(vocab.tokens.size())) {
  // Strings that take part in merges but are no token get symbol ids past the vocabulary.
  TokenMap extra;
  const auto intern = [&](std::string_view text) -> int32_t {
    if (const auto it = token_map.find(text); it != token_map.end()) return it->second;
    if (const auto it = extra.find(text); it != extra.end()) return it->second;
    const auto id = static_cast<int32_t>(vocab_size_ + extra.size());
    extra.emplace(std::string(text), id);
    return id;
  };
  const std::array<std::string, 256>& chars = byte_level_chars();
  for (size_t b = 0; b < 256; ++b) byte_symbol_[b] = intern(chars[b]);

  merges_.reserve(vocab.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string_view merge = vocab.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string_view::npos) continue;
    const std::string_view left = merge.substr(0, space);
    const std::string_view right = merge.substr(space + 1);
    joined.assign(left);
    joined.append(right);
    const int32_t left_id = intern(left);
    const int32_t right_id = intern(right);
    const int32_t result = intern(joined);
    merges_.try_emplace(pair_key(left_id, right_id), Merge{static_cast<int32_t>(rank), result});
  }
}

void BpeEncoder::encode(std::string_view text, const TokenMap& token_map,
                        std::vector<int32_t>& out) const {
  std::vector<std::string_view> words;
  pre_tokenize(pre_tokenizer_, text, words);
  Scratch scratch;
  // Words repeat: remember where in `out` each word's ids were first written.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
  for (const std::string_view word : words) {
    if (word.size() < 2) {
      encode_word(word, token_map, scratch, out);
      continue;
    }
    const auto [it, inserted] = seen.try_emplace(word, out.size(), 0);
    if (!inserted) {
      const auto [begin, end] = it->second;
      for (size_t i = begin; i < end; ++i) {
        const int32_t id = out[i];  // by value: push_back may reallocate
        out.push_back(id);
      }
      continue;
    }
    encode_word(word, token_map, scratch, out);
    it->second.second = out.size();
  }
}

void BpeEncoder::push_candidate(Scratch& scratch, int32_t left, int32_t right) const {
  if (left < 0 || right < 0) return;
  const int32_t left_id = scratch.symbols[left].id;
  const int32_t right_id = scratch.symbols[right].id;
  const auto it = merges_.find(pair_key(left_id, right_id));
  if (it == merges_.end()) return;
  scratch.heap.push_back({it->second.rank, left, left_id, right_id, it->second.result});
  std::push_heap(scratch.heap.begin(), scratch.heap.end(), &BpeEncoder::later);
}

void BpeEncoder::emit_bytes(std::string_view bytes, std::vector<int32_t>& out) const {
  // A merged string that is no token: fall back to the tokens of its single bytes.
  for (const char c : bytes) {
    const int32_t id = byte_symbol_[static_cast<uint8_t>(c)];
    if (id < vocab_size_) out.push_back(id);
  }
}

void BpeEncoder::encode_word(std::string_view word, const TokenMap& token_map, Scratch& scratch,
                             std::vector<int32_t>& out) const {
  const std::array<std::string, 256>& chars = byte_level_chars();
  if (ignore_merges_ && word.size() > 1) {
    scratch.mapped.clear();
    for (const char c : word) scratch.mapped += chars[static_cast<uint8_t>(c)];
    if (const auto it = token_map.find(scratch.mapped); it != token_map.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const auto n = static_cast<int32_t>(word.size());
  scratch.symbols.clear();
  scratch.heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    scratch.symbols.push_back(
        {byte_symbol_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, static_cast<uint32_t>(i)});
  }
  for (int32_t i = 0; i + 1 < n; ++i) push_candidate(scratch, i, i + 1);

  while (!scratch.heap.empty()) {
    std::pop_heap(scratch.heap.begin(), scratch.heap.end(), &BpeEncoder::later);
    const Candidate c = scratch.heap.back();
    scratch.heap.pop_back();
    Symbol& left = scratch.symbols[c.left];
    if (left.id != c.left_id || left.next < 0) continue;  // left changed since: stale
    Symbol& right = scratch.symbols[left.next];
    if (right.id != c.right_id) continue;                  // right changed since: stale
    left.id = c.result;
    right.id = kDeadSymbol;
    left.next = right.next;
    if (right.next >= 0) scratch.symbols[right.next].prev = c.left;
    push_candidate(scratch, left.prev, c.left);
    push_candidate(scratch, c.left, left.next);
  }

  for (int32_t i = 0; i >= 0 && i < n; i = scratch.symbols[i].next) {
    const Symbol& s = scratch.symbols[i];
    if (s.id < vocab_size_) {
      out.push_back(s.id);
    } else {
      const uint32_t end = s.next >= 0 ? scratch.symbols[s.next].begin : static_cast<uint32_t>(n);
      emit_bytes(word.substr(s.begin, end - s.begin), out);
    }
  }
}

}  // namespace lutq::gen
