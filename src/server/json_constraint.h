// Constrained decoding for response_format {"type": "json_object"}: a byte-level pushdown
// acceptor of JSON text whose top-level value is an object, and the logit mask it induces over a
// token vocabulary (a token is allowed when its whole piece keeps the text a prefix of valid
// JSON; end-of-generation tokens only once the object is closed). The acceptor is a small
// trivially-copyable value, so each candidate token is tried on a copy.
//
// Limits that keep generation bounded and the mask cheap: nesting depth kMaxDepth; at most
// kMaxSpaces whitespace bytes in a row between tokens; numbers of at most 15 integer and 15
// fraction digits and a 2-digit exponent (so they fit a double). Strings are checked for JSON escapes,
// control bytes and well-formed UTF-8 (a token may end inside a character: the next continues it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lutq::server {

class JsonAcceptor {
 public:
  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxSpaces = 4;
  static constexpr uint8_t kMaxDigits = 15;         // integer and fraction digits, each
  static constexpr uint8_t kMaxExponentDigits = 2;

  // Feeds one byte; false when no valid JSON object text continues this way (the acceptor is
  // then in an unspecified state: feed a copy).
  bool feed(char c);
  bool feed(std::string_view text);
  // The top-level object is complete: only the end may follow.
  bool done() const { return mode_ == Mode::kDone; }

 private:
  enum class Mode : uint8_t {
    kStart, kValue, kArrayFirst, kObjectFirst, kKey, kColon, kAfter, kString, kEscape, kUnicode, kNumber,
    kLiteral, kDone
  };
  bool structural(char c);
  bool start_value(char c);
  bool number(char c);
  bool utf8(unsigned char b);
  bool unicode_digit(char c);
  bool push(char open, Mode next);
  void value_done();

  Mode mode_ = Mode::kStart;
  uint8_t depth_ = 0;
  uint8_t sub_ = 0;     // number sub-state, literal position or \u digit count
  uint8_t literal_ = 0; // 0 true, 1 false, 2 null
  uint8_t spaces_ = 0;
  uint8_t digits_ = 0;  // digits of the current number part
  bool key_ = false;    // the string being read is an object key
  uint8_t utf8_left_ = 0;  // continuation bytes still due in a string, and the next one's range
  uint8_t utf8_lo_ = 0x80;
  uint8_t utf8_hi_ = 0xBF;
  uint16_t code_ = 0;       // \uXXXX digits so far
  bool want_low_ = false;   // a high surrogate escape awaits its low half
  char stack_[kMaxDepth] = {};
};

// Pieces of a vocabulary prepared once: the bytes of each token and which tokens end generation.
struct TokenTable {
  std::vector<std::string> pieces;
  std::vector<bool> end_of_generation;
};

// The tail every logit mask shares: logits[id] = -infinity for each of the first `vocab` ids
// that allowed(id) refuses and for every id past the vocabulary; when nothing is allowed (a depth
// limit), the end-of-generation ids (is_eog) are opened so generation ends.
template <class Allowed, class IsEog>
void apply_token_mask(std::span<float> logits, size_t vocab, Allowed allowed, IsEog is_eog) {
  constexpr float kOff = -std::numeric_limits<float>::infinity();
  const size_t n = std::min(logits.size(), vocab);
  bool any = false;
  for (size_t id = 0; id < n; ++id) {
    if (allowed(id)) {
      any = true;
    } else {
      logits[id] = kOff;
    }
  }
  for (size_t id = n; id < logits.size(); ++id) logits[id] = kOff;
  if (any) return;
  for (size_t id = 0; id < n; ++id) {
    if (is_eog(id)) logits[id] = 0.0f;
  }
}

// Sets logits[id] = -infinity for every token `state` does not allow. When nothing would be
// allowed (the depth limit), end-of-generation tokens are left open so generation ends.
void mask_json_logits(const JsonAcceptor& state, const TokenTable& table, std::span<float> logits);

}  // namespace lutq::server
