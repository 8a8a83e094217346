// A byte-level vocabulary (any text encodes: one token per byte, GPT-2's byte-to-char mapping)
// with ChatML's two markers as control tokens: 258 tokens, for tiny models behind a tokenizer.
#pragma once

#include <string>

#include "gen/bpe.h"

namespace lutq::testing {

inline gen::Vocab byte_vocab() {
  gen::Vocab v;
  v.model = gen::ModelKind::kBytePairEncoding;
  v.pre_tokenizer = gen::PreTokenizerKind::kGpt2;
  for (const std::string& c : gen::byte_level_chars()) v.tokens.push_back(c);
  v.types.assign(v.tokens.size(), gen::TokenType::kNormal);
  for (const char* t : {"<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(t);
    v.types.push_back(gen::TokenType::kControl);
  }
  return v;
}

}  // namespace lutq::testing
