#include "gen/unicode.h"

#include <algorithm>
#include <array>

namespace lutq::gen {

CodePoint decode_utf8(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const CodePoint invalid{kReplacementCharacter, 1, false};
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return {lead, 1, true};
  uint32_t size = 0;
  uint32_t value = 0;
  uint32_t min_value = 0;
  if ((lead & 0xE0) == 0xC0) {
    size = 2, value = lead & 0x1F, min_value = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3, value = lead & 0x0F, min_value = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4, value = lead & 0x07, min_value = 0x10000;
  } else {
    return invalid;  // stray continuation byte or 0xF8..0xFF
  }
  if (pos + size > text.size()) return invalid;
  for (uint32_t i = 1; i < size; ++i) {
    const uint8_t next = byte(pos + i);
    if ((next & 0xC0) != 0x80) return invalid;
    value = (value << 6) | (next & 0x3F);
  }
  if (value < min_value || value > kMaxCodePoint || (value >= 0xD800 && value <= 0xDFFF)) {
    return invalid;
  }
  return {value, size, true};
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

UnicodeCategory lookup_category(uint32_t cp) {
  const std::span<const uint32_t> runs = unicode_category_runs();
  // First run that starts after cp; the one before it holds cp. Runs start at U+0000.
  const uint32_t key = (cp << 3) | 7U;
  const auto it = std::upper_bound(runs.begin(), runs.end(), key);
  return static_cast<UnicodeCategory>(*(it - 1) & 7U);
}

}  // namespace

UnicodeCategory unicode_category(uint32_t cp) {
  static const std::array<UnicodeCategory, 256> kLatin1 = [] {
    std::array<UnicodeCategory, 256> table{};
    for (uint32_t c = 0; c < 256; ++c) table[c] = lookup_category(c);
    return table;
  }();
  if (cp < 256) return kLatin1[cp];
  if (cp > kMaxCodePoint) return UnicodeCategory::kOther;
  return lookup_category(cp);
}

bool unicode_is_whitespace(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace lutq::gen
