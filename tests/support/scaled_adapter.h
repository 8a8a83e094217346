// Test adapters without training: the scales of some BCQ matrices of a lutq file, each plane i
// multiplied by factor^(i + 1), written as a full scale adapter (lutqfile/adapter.h).
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"

namespace lutq::testing {

Status write_scaled_adapter(const io::Checkpoint& file, const std::string& base_name,
                            const std::vector<std::string>& names, float factor, const std::string& out);

}  // namespace lutq::testing
