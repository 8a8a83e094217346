// Text <-> token ids for the two tokenizer families of GGUF models:
//   * byte-level BPE ("gpt2": GPT-2, Llama-3, Qwen2, SmolLM2), with their pre-tokenizers;
//   * SentencePiece BPE with byte fallback ("llama": Llama-2).
// Behaviour follows llama.cpp's llama_tokenize / llama_detokenize; the GGUF test vocabularies'
// reference ids are reproduced exactly (tokenizer_test.cc).
//
// Invalid UTF-8 never fails: byte-level BPE encodes the stray bytes through its byte alphabet
// (the pre-tokenizer treats each such byte like U+FFFD, a symbol), SentencePiece writes them as
// byte tokens <0xXX>. Either way decode() gives the original bytes back.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "gen/vocab.h"

namespace lutq::io {
class Checkpoint;
}

namespace lutq::gen {

struct TokenizerData;
struct Fragment;

// Bytes [begin, begin + size) of a text.
struct TextRange {
  size_t begin = 0;
  size_t size = 0;
};

class Tokenizer {
 public:
  // Builds from a vocabulary as given, leniently: missing types count as normal, missing scores
  // as 0, out-of-range special ids as absent, malformed merges are skipped. from_vocab checks
  // instead and reports the first problem.
  explicit Tokenizer(Vocab vocab);
  static Result<Tokenizer> from_vocab(Vocab vocab);
  // Reads the tokenizer.ggml.* (and tokenizer.chat_template) metadata of a GGUF file.
  static Result<Tokenizer> from_checkpoint(const io::Checkpoint& gguf);

  // add_special: prepend BOS / append EOS where the vocabulary asks for them (add_bos/add_eos).
  // parse_special: text that spells a control token (e.g. "<|im_start|>") becomes that token;
  // otherwise it is tokenized as plain text. User-defined tokens are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // As encode(text, add_special, true), except that inside the byte ranges `literal` (sorted,
  // not overlapping) control tokens are not recognised: a chat prompt whose markers come from
  // the template while the messages' content, which may spell "<|im_end|>", stays text.
  std::vector<int32_t> encode(std::string_view text, bool add_special, std::span<const TextRange> literal) const;

  // Concatenated pieces. Control and unknown tokens are left out unless render_special.
  // SentencePiece: the space of the dummy prefix that encode() adds at the start of the text and
  // after each special token is removed again, so decode(encode(s)) == s.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  // The text of one token as it appears in decoded output (bytes of a byte-level token, "▁" as
  // a space, <0xXX> as its byte); control / unknown tokens give "" unless render_special.
  // Pieces of a multi-byte character may be split across tokens: buffer before printing.
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  int32_t bos() const;
  int32_t eos() const;
  int32_t vocab_size() const;
  // End of generation: eos and the turn / text terminators present in the vocabulary
  // (<|im_end|>, <|eot_id|>, <|endoftext|>, <|end_of_text|>, <|eom_id|>, <|end|>, <end_of_turn>, <EOT>).
  bool is_eog(int32_t id) const;

  // The vocabulary entry as stored (byte-level BPE: the mapped text, e.g. "Ġthe").
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;
  const Vocab& vocab() const;

 private:
  std::vector<int32_t> encode_fragments(std::string_view text, bool add_special,
                                        const std::vector<Fragment>& fragments) const;
  std::shared_ptr<const TokenizerData> data_;
};

}  // namespace lutq::gen
