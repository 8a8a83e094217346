#include "gen/pre_tokenizer.h"

#include <cstdint>

#include "gen/unicode.h"

namespace lutq::gen {
namespace {

// Per code point class bits; 0 means "past the end of the chunk".
constexpr uint8_t kInRange = 1;
constexpr uint8_t kLetter = 2;
constexpr uint8_t kNumber = 4;
constexpr uint8_t kSpace = 8;
constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

struct DecodedText {
  std::vector<uint32_t> code_points;
  std::vector<uint8_t> flags;
  std::vector<uint32_t> offsets;  // byte offset of each code point, plus text.size() at the end
};

DecodedText decode_text(std::string_view text) {
  DecodedText d;
  d.code_points.reserve(text.size());
  d.flags.reserve(text.size());
  d.offsets.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const CodePoint cp = decode_utf8(text, pos);
    uint8_t flags = kInRange;
    if (unicode_is_whitespace(cp.value)) flags |= kSpace;
    const UnicodeCategory category = unicode_category(cp.value);
    if (category == UnicodeCategory::kLetter) flags |= kLetter;
    if (category == UnicodeCategory::kNumber) flags |= kNumber;
    d.code_points.push_back(cp.value);
    d.flags.push_back(flags);
    d.offsets.push_back(static_cast<uint32_t>(pos));
    pos += cp.size;
  }
  d.offsets.push_back(static_cast<uint32_t>(text.size()));
  return d;
}

bool is_other(uint8_t flags) {  // [^\s\p{L}\p{N}] within the chunk
  return (flags & kInRange) != 0 && (flags & (kSpace | kLetter | kNumber)) == 0;
}

uint32_t ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp; }

// The code points [begin, end) of one chunk and the words cut from it.
class Chunk {
 public:
  Chunk(const DecodedText& d, std::string_view text, size_t begin, size_t end,
        std::vector<std::string_view>& words)
      : d_(d), text_(text), begin_(begin), end_(end), prev_end_(begin), words_(words) {}

  size_t begin() const { return begin_; }
  size_t end() const { return end_; }
  uint32_t cpt(size_t pos) const { return pos < end_ ? d_.code_points[pos] : kOutOfRange; }
  uint8_t flags(size_t pos) const { return pos < end_ ? d_.flags[pos] : 0; }

  // Ends the current word at code point `end`; returns the word's length in code points.
  size_t add(size_t end) {
    const size_t length = end - prev_end_;
    if (length > 0) {
      const uint32_t from = d_.offsets[prev_end_];
      words_.push_back(text_.substr(from, d_.offsets[end] - from));
    }
    prev_end_ = end;
    return length;
  }

 private:
  const DecodedText& d_;
  std::string_view text_;
  size_t begin_;
  size_t end_;
  size_t prev_end_;
  std::vector<std::string_view>& words_;
};

// Contractions 's 't 're 've 'm 'll 'd at pos (an apostrophe); returns their length or 0.
size_t contraction_length(const Chunk& c, size_t pos, bool ignore_case) {
  if (c.cpt(pos) != '\'' || pos + 1 >= c.end()) return 0;
  const auto fold = [&](uint32_t cp) { return ignore_case ? ascii_lower(cp) : cp; };
  const uint32_t next = fold(c.cpt(pos + 1));
  if (next == 's' || next == 't' || next == 'm' || next == 'd') return 2;
  if (pos + 2 >= c.end()) return 0;
  const uint32_t next2 = fold(c.cpt(pos + 2));
  if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') ||
      (next == 'l' && next2 == 'l')) {
    return 3;
  }
  return 0;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(Chunk& c) {
  for (size_t pos = c.begin(); pos < c.end();) {
    const uint32_t cpt = c.cpt(pos);
    if (const size_t n = contraction_length(c, pos, /*ignore_case=*/false); n > 0) {
      pos += c.add(pos + n);
      continue;
    }
    const uint8_t flags2 = cpt == ' ' ? c.flags(pos + 1) : c.flags(pos);
    const size_t skip_space = cpt == ' ' ? 1 : 0;
    if (flags2 & kLetter) {  // ?\p{L}+
      pos += skip_space;
      while (c.flags(pos) & kLetter) ++pos;
      c.add(pos);
      continue;
    }
    if (flags2 & kNumber) {  // ?\p{N}+
      pos += skip_space;
      while (c.flags(pos) & kNumber) ++pos;
      c.add(pos);
      continue;
    }
    if (is_other(flags2)) {  // ?[^\s\p{L}\p{N}]+
      pos += skip_space;
      while (is_other(c.flags(pos))) ++pos;
      c.add(pos);
      continue;
    }
    size_t spaces = 0;
    while (c.flags(pos + spaces) & kSpace) ++spaces;
    if (spaces > 1 && c.cpt(pos + spaces) != kOutOfRange) {  // \s+(?!\S)
      pos += spaces - 1;
      c.add(pos);
      continue;
    }
    if (spaces > 0) {  // \s+
      pos += spaces;
      c.add(pos);
      continue;
    }
    c.add(++pos);  // no match
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(Chunk& c, size_t max_digits) {
  const auto is_newline = [](uint32_t cp) { return cp == '\r' || cp == '\n'; };
  for (size_t pos = c.begin(); pos < c.end();) {
    const uint32_t cpt = c.cpt(pos);
    const uint8_t flags = c.flags(pos);
    if (const size_t n = contraction_length(c, pos, /*ignore_case=*/true); n > 0) {
      pos += c.add(pos + n);
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_newline(cpt) && !(flags & kNumber) &&
        ((flags & kLetter) || (c.flags(pos + 1) & kLetter))) {
      ++pos;
      while (c.flags(pos) & kLetter) ++pos;
      c.add(pos);
      continue;
    }
    if (flags & kNumber) {  // \p{N}{1,max_digits}
      size_t group_begin = pos;
      while (c.flags(pos) & kNumber) {
        if (++pos - group_begin >= max_digits) {
          c.add(pos);
          group_begin = pos;
        }
      }
      c.add(pos);
      continue;
    }
    // ?[^\s\p{L}\p{N}]+[\r\n]*
    const uint8_t flags2 = cpt == ' ' ? c.flags(pos + 1) : flags;
    if ((flags2 & (kSpace | kLetter | kNumber)) == 0 && (flags & kInRange)) {
      pos += cpt == ' ' ? 1 : 0;
      while (is_other(c.flags(pos))) ++pos;
      while (is_newline(c.cpt(pos))) ++pos;
      c.add(pos);
      continue;
    }
    size_t spaces = 0;
    size_t last_newline_end = 0;
    while (c.flags(pos + spaces) & kSpace) {
      if (is_newline(c.cpt(pos + spaces))) last_newline_end = pos + spaces + 1;
      ++spaces;
    }
    if (last_newline_end > 0) {  // \s*[\r\n]+
      pos = last_newline_end;
      c.add(pos);
      continue;
    }
    if (spaces > 1 && c.cpt(pos + spaces) != kOutOfRange) {  // \s+(?!\S)
      pos += spaces - 1;
      c.add(pos);
      continue;
    }
    if (spaces > 0) {  // \s+
      pos += spaces;
      c.add(pos);
      continue;
    }
    c.add(++pos);  // no match
  }
}

}  // namespace

void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& words) {
  if (text.empty()) return;
  const DecodedText d = decode_text(text);
  const size_t n = d.code_points.size();
  switch (kind) {
    case PreTokenizerKind::kGpt2: {
      Chunk c(d, text, 0, n, words);
      split_gpt2(c);
      break;
    }
    case PreTokenizerKind::kLlama3:
    case PreTokenizerKind::kQwen2: {
      Chunk c(d, text, 0, n, words);
      split_llama3(c, kind == PreTokenizerKind::kLlama3 ? 3 : 1);
      break;
    }
    case PreTokenizerKind::kSmolLm: {
      // \p{N} first: every number code point is a chunk of its own, the runs between them are
      // split by the GPT-2 rules.
      size_t begin = 0;
      for (size_t i = 0; i <= n; ++i) {
        if (i < n && !(d.flags[i] & kNumber)) continue;
        if (i > begin) {
          Chunk c(d, text, begin, i, words);
          split_gpt2(c);
        }
        if (i < n) {
          Chunk digit(d, text, i, i + 1, words);
          digit.add(i + 1);
        }
        begin = i + 1;
      }
      break;
    }
  }
}

}  // namespace lutq::gen
