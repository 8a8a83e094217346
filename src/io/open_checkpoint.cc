// open_checkpoint: picks the reader by the file's content (GGUF by its magic) or, for Hugging
// Face checkpoints, which have no magic, by shape: a folder, a .safetensors or .index.json file.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "io/checkpoint.h"
#include "io/gguf_file.h"
#include "io/hf_checkpoint.h"

namespace lutq::io {

Result<std::unique_ptr<Checkpoint>> open_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status(StatusCode::kIoError, path + ": no such file or folder");
  const auto ends_with = [&path](std::string_view suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (std::filesystem::is_directory(path, ec) || ends_with(".safetensors") || ends_with(".index.json")) {
    Result<HfCheckpoint> hf = HfCheckpoint::open(path);
    if (!hf) return hf.status();
    return std::unique_ptr<Checkpoint>(std::make_unique<HfCheckpoint>(std::move(*hf)));
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
  return Status::unsupported(path + ": not a model file this build reads (expected a GGUF or lutq file, or a Hugging "
                             "Face checkpoint: a folder, .safetensors or .safetensors.index.json)");
}

}  // namespace lutq::io
