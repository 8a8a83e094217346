// Helpers around the runtime for tests on tiny models (tiny_llama.h): open the GGUF image, load
// it, run one prefill, or get the load error of a malformed spec.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/gguf_file.h"
#include "model/model.h"
#include "support/tiny_llama.h"

namespace lutq::testing {

inline io::GgufFile open_tiny(const Tiny& t) {
  Result<io::GgufFile> f = io::GgufFile::from_memory(t.bytes, "tiny.gguf");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

inline model::Model load_tiny(const io::GgufFile& f, ThreadPool& pool, const model::LoadOptions& opt = {}) {
  Result<model::Model> m = model::Model::load(f, opt, pool);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(*m);
}

// All logits [tokens][vocab] from one prefill call.
inline std::vector<float> prefill_all(const model::Model& model, const std::vector<int32_t>& tokens, ThreadPool& pool) {
  Result<std::unique_ptr<model::Memory>> cache = model.make_memory(32);
  EXPECT_TRUE(cache.is_ok());
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model.config().n_vocab));
  const Status s = model.forward(tokens, 0, **cache, logits.data(), pool, model::LogitsMode::kAll);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return logits;
}

// The message of the error loading `spec` gives, or "(loaded)".
inline std::string load_error(const TinySpec& spec) {
  const Tiny t = make_tiny(spec);
  const io::GgufFile f = open_tiny(t);
  ThreadPool pool(1);
  Result<model::Model> m = model::Model::load(f, {}, pool);
  return m.is_ok() ? std::string("(loaded)") : m.status().message();
}

}  // namespace lutq::testing
