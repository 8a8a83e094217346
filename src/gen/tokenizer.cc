#include "gen/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "gen/bpe.h"
#include "gen/spm.h"

namespace lutq::gen {

// A piece of the input: raw text, or a token the special-token pass cut out of it.
struct Fragment {
  int32_t token;  // kNoToken for raw text
  size_t begin;
  size_t size;
};

struct TokenizerData {
  Vocab vocab;
  TokenMap token_map;
  std::vector<int32_t> special_tokens;  // control, unknown and user-defined; longest first
  std::vector<int32_t> eog_tokens;      // sorted
  BpeEncoder bpe;
  SpmEncoder spm;
};

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

bool is_special_type(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUnknown || type == TokenType::kUserDefined;
}


// llama.cpp's tokenizer_st_partition: special tokens, longest first, are cut out of the raw
// fragments left by the longer ones, leftmost occurrence first.
// True when [begin, end) overlaps one of the sorted ranges.
bool overlaps(std::span<const TextRange> ranges, size_t begin, size_t end) {
  const auto it = std::upper_bound(ranges.begin(), ranges.end(), begin,
                                   [](size_t b, const TextRange& r) { return b < r.begin + r.size; });
  return it != ranges.end() && it->begin < end;
}

// Special tokens whose occurrence overlaps `literal` stay text unless they are user-defined
// (those are recognised everywhere, as with parse_special = false).
std::vector<Fragment> partition(const TokenizerData& d, std::string_view text, bool parse_special,
                                std::span<const TextRange> literal = {}) {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : d.special_tokens) {
    const TokenType type = d.vocab.types[id];
    if (!parse_special && type != TokenType::kUserDefined) continue;
    const std::string_view special = d.vocab.tokens[id];
    if (special.empty() || text.find(special) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = text.substr(f.begin, f.size);
      const bool check_literal = !literal.empty() && type != TokenType::kUserDefined;
      // The next occurrence at or after `from` that may become the token.
      const auto find = [&](size_t from) {
        size_t hit = raw.find(special, from);
        while (check_literal && hit != std::string_view::npos &&
               overlaps(literal, f.begin + hit, f.begin + hit + special.size())) {
          hit = raw.find(special, hit + 1);
        }
        return hit;
      };
      size_t pos = 0;
      for (size_t hit = find(0); hit != std::string_view::npos; hit = find(pos)) {
        if (hit > pos) next.push_back({kNoToken, f.begin + pos, hit - pos});
        next.push_back({id, f.begin + hit, special.size()});
        pos = hit + special.size();
      }
      if (pos < raw.size()) next.push_back({kNoToken, f.begin + pos, raw.size() - pos});
    }
    fragments.swap(next);
  }
  return fragments;
}

void normalize(Vocab& v) {
  const auto n = static_cast<int32_t>(v.tokens.size());
  v.types.resize(v.tokens.size(), TokenType::kNormal);
  v.scores.resize(v.tokens.size(), 0.0f);
  for (int32_t* id : {&v.bos_id, &v.eos_id, &v.unknown_id, &v.padding_id}) {
    if (*id < 0 || *id >= n) *id = kNoToken;
  }
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) {
  auto d = std::make_shared<TokenizerData>();
  d->vocab = std::move(vocab);
  Vocab& v = d->vocab;
  normalize(v);
  const auto n = static_cast<int32_t>(v.tokens.size());
  d->token_map.reserve(v.tokens.size());
  for (int32_t id = 0; id < n; ++id) d->token_map.insert_or_assign(v.tokens[id], id);  // last wins

  for (int32_t id = 0; id < n; ++id) {
    if (is_special_type(v.types[id])) d->special_tokens.push_back(id);
  }
  std::stable_sort(d->special_tokens.begin(), d->special_tokens.end(), [&](int32_t a, int32_t b) {
    return v.tokens[a].size() > v.tokens[b].size();
  });

  static constexpr std::array<std::string_view, 10> kEogTexts = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
      "<EOT>", "_<EOT>", "<|end_of_text|>", "<|end▁of▁sentence|>"};
  if (v.eos_id != kNoToken) d->eog_tokens.push_back(v.eos_id);
  for (const std::string_view text : kEogTexts) {
    if (const auto it = d->token_map.find(text); it != d->token_map.end()) d->eog_tokens.push_back(it->second);
  }
  std::sort(d->eog_tokens.begin(), d->eog_tokens.end());
  d->eog_tokens.erase(std::unique(d->eog_tokens.begin(), d->eog_tokens.end()), d->eog_tokens.end());

  if (v.model == ModelKind::kBytePairEncoding) {
    d->bpe = BpeEncoder(v, d->token_map);
  } else {
    d->spm = SpmEncoder(v, d->token_map);
  }
  data_ = std::move(d);
}

Result<Tokenizer> Tokenizer::from_vocab(Vocab vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) return Status::invalid("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) return Status::invalid("tokenizer: vocabulary too large");
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    return Status::invalid("tokenizer: " + std::to_string(vocab.scores.size()) + " scores for " +
                           std::to_string(n) + " tokens");
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    return Status::invalid("tokenizer: " + std::to_string(vocab.types.size()) + " token types for " +
                           std::to_string(n) + " tokens");
  }
  for (const TokenType t : vocab.types) {
    if (static_cast<int>(t) < 1 || static_cast<int>(t) > 6) {
      return Status::invalid("tokenizer: token type " + std::to_string(static_cast<int>(t)) + " out of range");
    }
  }
  const std::pair<const char*, int32_t> ids[] = {{"bos", vocab.bos_id}, {"eos", vocab.eos_id},
                                                 {"unknown", vocab.unknown_id}, {"padding", vocab.padding_id}};
  for (const auto& [name, id] : ids) {
    if (id != kNoToken && (id < 0 || static_cast<size_t>(id) >= n)) {
      return Status::invalid(std::string("tokenizer: ") + name + " token id " + std::to_string(id) +
                             " outside the vocabulary of " + std::to_string(n));
    }
  }
  if ((vocab.add_bos && vocab.bos_id == kNoToken) || (vocab.add_eos && vocab.eos_id == kNoToken)) {
    return Status::invalid("tokenizer: add_bos/add_eos set without a bos/eos token");
  }
  if (vocab.model == ModelKind::kBytePairEncoding) {
    if (vocab.merges.empty()) return Status::invalid("tokenizer: byte-level BPE vocabulary without merges");
    for (size_t i = 0; i < vocab.merges.size(); ++i) {
      if (vocab.merges[i].find(' ', 1) == std::string::npos) {
        return Status::invalid("tokenizer: merge " + std::to_string(i) + " '" + vocab.merges[i] +
                               "' has no separating space");
      }
    }
  }
  return Tokenizer(std::move(vocab));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const TokenizerData& d = *data_;
  return encode_fragments(text, add_special, partition(d, text, parse_special));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       std::span<const TextRange> literal) const {
  return encode_fragments(text, add_special, partition(*data_, text, true, literal));
}

std::vector<int32_t> Tokenizer::encode_fragments(std::string_view text, bool add_special,
                                                 const std::vector<Fragment>& fragments) const {
  const TokenizerData& d = *data_;
  const Vocab& v = d.vocab;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && v.add_bos && v.bos_id != kNoToken) out.push_back(v.bos_id);
  if (v.model == ModelKind::kBytePairEncoding) {
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
      } else {
        d.bpe.encode(text.substr(f.begin, f.size), d.token_map, out);
      }
    }
  } else {
    bool prev_special = true;  // a dummy-prefix space starts the text and follows special tokens
    std::string escaped;
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      escaped.clear();
      if (v.add_space_prefix && prev_special) escaped += kSpmSpace;
      for (const char c : text.substr(f.begin, f.size)) {
        if (c == ' ') {
          escaped += kSpmSpace;
        } else {
          escaped += c;
        }
      }
      d.spm.encode(escaped, d.token_map, out);
      prev_special = false;
    }
  }
  if (add_special && v.add_eos && v.eos_id != kNoToken) out.push_back(v.eos_id);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const Vocab& v = data_->vocab;
  if (id < 0 || id >= vocab_size()) return {};
  const std::string& text = v.tokens[id];
  switch (v.types[id]) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return render_special ? text : std::string();
    case TokenType::kUserDefined:
      return text;
    case TokenType::kUnused:
      return {};
    case TokenType::kByte:
      if (v.model == ModelKind::kSentencePiece && text.size() == 6 && text.starts_with("<0x")) {
        return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      }
      break;
    case TokenType::kNormal:
      break;
  }
  std::string piece;
  if (v.model == ModelKind::kBytePairEncoding) {
    byte_level_decode(text, piece);
  } else {
    piece.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      if (text.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
        piece += ' ';
        pos += kSpmSpace.size();
      } else {
        piece += text[pos++];
      }
    }
  }
  return piece;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  const Vocab& v = data_->vocab;
  const bool strip_prefix = v.model == ModelKind::kSentencePiece && v.add_space_prefix;
  std::string out;
  bool text_start = true;  // at the start, or right after a special token
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    const TokenType type = v.types[id];
    std::string piece = token_to_piece(id, render_special);
    if (is_special_type(type)) {
      text_start = true;
    } else {
      if (strip_prefix && text_start && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      text_start = false;
    }
    out += piece;
  }
  return out;
}

int32_t Tokenizer::bos() const { return data_->vocab.bos_id; }
int32_t Tokenizer::eos() const { return data_->vocab.eos_id; }
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(data_->vocab.tokens.size()); }

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(data_->eog_tokens.begin(), data_->eog_tokens.end(), id);
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  return id >= 0 && id < vocab_size() ? data_->vocab.tokens[id] : kEmpty;
}

TokenType Tokenizer::token_type(int32_t id) const {
  return id >= 0 && id < vocab_size() ? data_->vocab.types[id] : TokenType::kUnused;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const auto it = data_->token_map.find(text);
  if (it == data_->token_map.end()) return std::nullopt;
  return it->second;
}

const Vocab& Tokenizer::vocab() const { return data_->vocab; }

}  // namespace lutq::gen
