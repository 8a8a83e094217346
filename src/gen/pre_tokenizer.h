// Pre-tokenizers of byte-level BPE models: split text into the words that BPE merges within.
// Hand-written equivalents of the regexes named in PreTokenizerKind (the same splitting
// llama.cpp's unicode_regex_split_custom_* does), with Unicode categories from unicode.h.
#pragma once

#include <string_view>
#include <vector>

#include "gen/vocab.h"

namespace lutq::gen {

// Appends the words of text, in order, as views into text; they concatenate back to text.
// Invalid UTF-8 bytes are kept byte for byte and classified like U+FFFD (a symbol).
void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& words);

}  // namespace lutq::gen
