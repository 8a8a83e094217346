// open_checkpoint: picks the reader by the file's content.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "io/checkpoint.h"
#include "io/gguf_file.h"

namespace lutq::io {

Result<std::unique_ptr<Checkpoint>> open_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status(StatusCode::kIoError, path + ": no such file or folder");
  if (std::filesystem::is_directory(path, ec)) {
    return Status::unsupported(path + ": is a folder; expected a GGUF or lutq model file");
  }
  char magic[4] = {};
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    const size_t got = std::fread(magic, 1, sizeof magic, f);
    std::fclose(f);
    if (got == sizeof magic && std::string_view(magic, 4) == "GGUF") {
      Result<GgufFile> g = GgufFile::open(path);
      if (!g) return g.status();
      return std::unique_ptr<Checkpoint>(std::make_unique<GgufFile>(std::move(*g)));
    }
  } else {
    return Status(StatusCode::kIoError, path + ": cannot open for reading");
  }
  return Status::unsupported(path + ": not a model file this build reads (expected a GGUF or lutq file)");
}

}  // namespace lutq::io
