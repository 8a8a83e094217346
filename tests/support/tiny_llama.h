// A tiny random Llama (GGUF written in memory with io::GgufWriter) and a matching vocabulary of
// plain-text tokens, for tests that need a real model and tokenizer but not real weights: the
// batched forward pass and the server's scheduler.
#pragma once

#include <cstdint>

#include "gen/vocab.h"
#include "io/gguf_file.h"

namespace lutq::testing {

struct TinyLlamaSpec {
  int64_t n_embd = 32;
  int64_t n_head = 2;
  int64_t n_head_kv = 1;
  int64_t n_ff = 64;
  int64_t n_vocab = 40;
  int64_t n_layer = 2;
  int64_t ctx = 128;
  uint32_t seed = 11;
};

// F32 weights ~ N(mean, scale) with scales that keep activations O(1); fails the calling test
// (and returns an empty file's error state) if the writer or reader refuses.
io::GgufFile tiny_llama_gguf(const TinyLlamaSpec& spec = {});

// Token i is the text "t<i> " (all normal tokens; no BOS/EOS).
gen::Vocab tiny_llama_vocab(const TinyLlamaSpec& spec = {});

}  // namespace lutq::testing
