// A GGUF image built in memory (io::GgufWriter) opened for reading, for tests of the file readers.
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "io/gguf_file.h"
#include "io/gguf_writer.h"

namespace lutq::testing {

// Opens w's bytes as the file "test.lutq"; a failure to open fails the test.
inline io::GgufFile open_image(const io::GgufWriter& w) {
  Result<io::GgufFile> f = io::GgufFile::from_memory(w.to_bytes(), "test.lutq");
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  return std::move(*f);
}

}  // namespace lutq::testing
