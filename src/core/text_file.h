// Reading a whole text file (prompts, evaluation and calibration texts) with an error that names
// the path.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "core/status.h"

namespace lutq {

inline Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(StatusCode::kIoError, path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status(StatusCode::kIoError, path + ": read failed");
  return ss.str();
}

}  // namespace lutq
