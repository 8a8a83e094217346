#include "gen/spm.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <utility>

#include "gen/unicode.h"

namespace lutq::gen {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

}  // namespace

SpmEncoder::SpmEncoder(const Vocab& vocab, const TokenMap& token_map) {
  const size_t n = vocab.tokens.size();
  scores_.assign(n, 0.0f);
  std::copy_n(vocab.scores.begin(), std::min(n, vocab.scores.size()), scores_.begin());
  mergeable_.assign(n, 1);
  for (size_t i = 0; i < std::min(n, vocab.types.size()); ++i) {
    const TokenType type = vocab.types[i];
    mergeable_[i] = (type == TokenType::kNormal || type == TokenType::kUserDefined) ? 1 : 0;
  }
  split_words_ = true;
  for (size_t i = 0; i < n && split_words_; ++i) {
    const std::string_view t = vocab.tokens[i];
    for (size_t at = t.find(kSpace, 1); at != std::string_view::npos; at = t.find(kSpace, at + 1)) {
      if (mergeable_[i] && !t.substr(0, at).ends_with(kSpace)) {
        split_words_ = false;
        break;
      }
    }
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (size_t b = 0; b < 256; ++b) {
    const std::string name = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    int32_t id = vocab.unknown_id;
    if (const auto it = token_map.find(name); it != token_map.end()) {
      id = it->second;
    } else if (const auto it2 = token_map.find(std::string(1, static_cast<char>(b))); it2 != token_map.end()) {
      id = it2->second;
    }
    byte_tokens_[b] = id;
  }
}

void SpmEncoder::push_bigram(std::string_view text, const TokenMap& token_map,
                             const std::vector<Symbol>& symbols, std::vector<Bigram>& heap,
                             int32_t left, int32_t right) const {
  if (left < 0 || right < 0) return;
  const uint32_t size = symbols[left].size + symbols[right].size;
  const auto it = token_map.find(text.substr(symbols[left].begin, size));
  if (it == token_map.end() || !mergeable_[it->second]) return;
  heap.push_back({scores_[it->second], left, right, size});
  std::push_heap(heap.begin(), heap.end(), &SpmEncoder::later);
}

void SpmEncoder::encode(std::string_view text, const TokenMap& token_map, std::vector<int32_t>& out) const {
  if (!split_words_) {
    encode_segment(text, token_map, out);
    return;
  }
  // Segments start where a run of "▁" starts; repeated segments reuse the ids written first.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = begin;
    while (end < text.size() && text.compare(end, kSpace.size(), kSpace) == 0) end += kSpace.size();
    end = text.find(kSpace, end);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view segment = text.substr(begin, end - begin);
    const auto [it, inserted] = seen.try_emplace(segment, out.size(), 0);
    if (inserted) {
      encode_segment(segment, token_map, out);
      it->second.second = out.size();
    } else {
      for (size_t i = it->second.first; i < it->second.second; ++i) {
        const int32_t id = out[i];  // by value: push_back may reallocate
        out.push_back(id);
      }
    }
    begin = end;
  }
}

void SpmEncoder::encode_segment(std::string_view text, const TokenMap& token_map, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t size = decode_utf8(text, pos).size;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, pos + size < text.size() ? index + 1 : -1, static_cast<uint32_t>(pos), size});
    pos += size;
  }
  std::vector<Bigram> heap;
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) {
    push_bigram(text, token_map, symbols, heap, i - 1, i);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), &SpmEncoder::later);
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;  // stale
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    push_bigram(text, token_map, symbols, heap, left.prev, b.left);
    push_bigram(text, token_map, symbols, heap, b.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.begin, s.size);
    if (const auto it = token_map.find(piece); it != token_map.end()) {
      out.push_back(it->second);
      continue;
    }
    for (const char c : piece) {
      const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
      if (id >= 0) out.push_back(id);
    }
  }
}

}  // namespace lutq::gen
