// JsonAcceptor and the JSON logit mask (json_constraint.h).
#include "server/json_constraint.h"

#include <algorithm>
#include <limits>

namespace lutq::server {
namespace {

constexpr std::string_view kLiterals[3] = {"true", "false", "null"};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// Number sub-states: 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.', 5 fraction
// digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits.
constexpr bool number_may_end(uint8_t sub) { return sub == 2 || sub == 3 || sub == 5 || sub == 8; }

}  // namespace

bool JsonAcceptor::feed(std::string_view text) {
  for (const char c : text) {
    if (!feed(c)) return false;
  }
  return true;
}

bool JsonAcceptor::feed(char c) {
  switch (mode_) {
    case Mode::kString:
      if (want_low_ && c != '\\') return false;  // a high surrogate escape needs its low half
      if (utf8_left_ > 0 || static_cast<unsigned char>(c) >= 0x80) return utf8(static_cast<unsigned char>(c));
      if (c == '"') {
        if (key_) {
          mode_ = Mode::kColon;
        } else {
          value_done();
        }
      } else if (c == '\\') {
        mode_ = Mode::kEscape;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        return false;
      }
      return true;
    case Mode::kEscape:
      if (c == 'u') {
        mode_ = Mode::kUnicode;
        sub_ = 0;
        code_ = 0;
        return true;
      }
      if (want_low_ || std::string_view("\"\\/bfnrt").find(c) == std::string_view::npos) return false;
      mode_ = Mode::kString;
      return true;
    case Mode::kUnicode:
      return unicode_digit(c);
    case Mode::kNumber:
      if (number(c)) return true;
      if (!number_may_end(sub_)) return false;
      value_done();
      return structural(c);
    case Mode::kLiteral: {
      const std::string_view lit = kLiterals[literal_];
      if (c != lit[sub_]) return false;
      if (++sub_ == lit.size()) value_done();
      return true;
    }
    default: return structural(c);
  }
}

bool JsonAcceptor::structural(char c) {
  if (is_space(c)) {
    if (mode_ == Mode::kDone || spaces_ >= kMaxSpaces) return false;
    ++spaces_;
    return true;
  }
  spaces_ = 0;
  switch (mode_) {
    case Mode::kStart: return c == '{' && push('{', Mode::kObjectFirst);
    case Mode::kArrayFirst:
      if (c == ']') {
        --depth_;
        value_done();
        return true;
      }
      return start_value(c);
    case Mode::kValue: return start_value(c);
    case Mode::kObjectFirst:
      if (c == '}') {
        --depth_;
        value_done();
        return true;
      }
      [[fallthrough]];
    case Mode::kKey:
      if (c != '"') return false;
      mode_ = Mode::kString;
      key_ = true;
      return true;
    case Mode::kColon:
      if (c != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kAfter: {
      const char open = stack_[depth_ - 1];
      if (c == ',') {
        mode_ = open == '{' ? Mode::kKey : Mode::kValue;
        return true;
      }
      if ((c == '}' && open == '{') || (c == ']' && open == '[')) {
        --depth_;
        value_done();
        return true;
      }
      return false;
    }
    default: return false;  // kDone
  }
}

bool JsonAcceptor::start_value(char c) {
  switch (c) {
    case '{': return push('{', Mode::kObjectFirst);
    case '[': return push('[', Mode::kArrayFirst);
    case '"':
      mode_ = Mode::kString;
      key_ = false;
      return true;
    case 't':
    case 'f':
    case 'n':
      mode_ = Mode::kLiteral;
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      sub_ = 1;
      return true;
    default:
      if (c != '-' && !is_digit(c)) return false;
      mode_ = Mode::kNumber;
      sub_ = c == '-' ? 1 : c == '0' ? 2 : 3;
      digits_ = sub_ == 3 ? 1 : 0;
      return true;
  }
}

bool JsonAcceptor::number(char c) {
  const bool exp = c == 'e' || c == 'E';
  // Digits per part are bounded so every number fits a double (a parser may refuse overflow).
  const uint8_t limit = sub_ >= 6 ? kMaxExponentDigits : kMaxDigits;
  const bool same_part = (sub_ == 3 || sub_ == 5 || sub_ == 8);
  const bool digit = is_digit(c) && !(same_part && digits_ >= limit);
  uint8_t next = 0;
  switch (sub_) {
    case 1: next = c == '0' ? 2 : digit ? 3 : 0; break;
    case 2: next = c == '.' ? 4 : exp ? 6 : 0; break;
    case 3: next = digit ? 3 : c == '.' ? 4 : exp ? 6 : 0; break;
    case 4: next = digit ? 5 : 0; break;
    case 5: next = digit ? 5 : exp ? 6 : 0; break;
    case 6: next = (c == '+' || c == '-') ? 7 : digit ? 8 : 0; break;
    case 7:
    case 8: next = digit ? 8 : 0; break;
    default: break;
  }
  if (next == 0) return false;
  digits_ = next == sub_ ? static_cast<uint8_t>(digits_ + 1) : static_cast<uint8_t>(is_digit(c) ? 1 : 0);
  sub_ = next;
  return true;
}

// A digit of \uXXXX. Surrogates must pair (nlohmann, like RFC 8259 parsers that decode, refuses
// a lone one): each digit is checked against the codes its prefix can still reach, so a prefix
// that is accepted can always be completed.
bool JsonAcceptor::unicode_digit(char c) {
  if (!is_hex(c)) return false;
  const int v = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
  code_ = static_cast<uint16_t>(code_ * 16 + v);
  ++sub_;
  const int span = 1 << (4 * (4 - sub_));  // codes reachable from this prefix: [lo, lo + span)
  const int lo = code_ * span, hi = lo + span - 1;
  const bool all_low = lo >= 0xDC00 && hi <= 0xDFFF;
  const bool some_low = lo <= 0xDFFF && hi >= 0xDC00;
  if (want_low_ ? !some_low : all_low) return false;
  if (sub_ < 4) return true;
  mode_ = Mode::kString;
  if (want_low_) {
    want_low_ = false;
  } else if (code_ >= 0xD800 && code_ <= 0xDBFF) {
    want_low_ = true;
  }
  return true;
}

// UTF-8 inside strings, as RFC 3629: no overlong forms, surrogates or code points past U+10FFFF.
bool JsonAcceptor::utf8(unsigned char b) {
  if (utf8_left_ > 0) {
    if (b < utf8_lo_ || b > utf8_hi_) return false;
    --utf8_left_;
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xBF;
    return true;
  }
  utf8_lo_ = 0x80;
  utf8_hi_ = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    utf8_left_ = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    utf8_left_ = 2;
    if (b == 0xE0) utf8_lo_ = 0xA0;
    if (b == 0xED) utf8_hi_ = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    utf8_left_ = 3;
    if (b == 0xF0) utf8_lo_ = 0x90;
    if (b == 0xF4) utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  return true;
}

bool JsonAcceptor::push(char open, Mode next) {
  if (depth_ >= kMaxDepth) return false;
  stack_[depth_++] = open;
  mode_ = next;
  return true;
}

void JsonAcceptor::value_done() { mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfter; }

void mask_json_logits(const JsonAcceptor& state, const TokenTable& table, std::span<float> logits) {
  const auto allowed = [&](size_t id) {
    if (table.end_of_generation[id]) return state.done();
    if (table.pieces[id].empty() || state.done()) return false;
    JsonAcceptor copy = state;
    return copy.feed(table.pieces[id]);
  };
  apply_token_mask(logits, table.pieces.size(), allowed, [&](size_t id) { return table.end_of_generation[id]; });
}

}  // namespace lutq::server
