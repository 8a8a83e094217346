// Unicode helpers for the tokenizer: lenient UTF-8 decoding, UTF-8 encoding, general categories
// (from the generated run-length table in unicode_tables.cc) and the White_Space property.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lutq::gen {

// Major general category (the first letter of the Unicode general category). Values are the
// codes gen_unicode_tables.py writes: keep them in step.
enum class UnicodeCategory : uint8_t {
  kOther = 0,  // C*: control, format, surrogate, private use, unassigned
  kLetter = 1,
  kMark = 2,
  kNumber = 3,
  kPunctuation = 4,
  kSymbol = 5,
  kSeparator = 6,
};

// One decoded code point. An invalid or truncated UTF-8 sequence decodes as one byte with
// valid == false and value == U+FFFD (the replacement character).
struct CodePoint {
  uint32_t value = 0;
  uint32_t size = 0;  // bytes consumed, 1..4
  bool valid = false;
};

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;
inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// Decodes the code point starting at text[pos] (pos < text.size()). Rejects overlong forms,
// surrogates and values past U+10FFFF.
CodePoint decode_utf8(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of cp (cp <= U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

// Generated table: runs of (first_code_point << 3) | category, sorted by code point.
std::span<const uint32_t> unicode_category_runs();

UnicodeCategory unicode_category(uint32_t cp);

// The White_Space property (what \s matches in the Unicode-aware regexes tokenizers use).
bool unicode_is_whitespace(uint32_t cp);

}  // namespace lutq::gen
