// Test-only JSON Schema validation of the subset server/json_schema.h supports: the reference
// that constrained output is checked against (a separate, direct reading of the keywords).
#pragma once

#include <nlohmann/json.hpp>

namespace lutq::testing {

// Whether `v` validates against schema `s`; $refs resolve in `root`.
bool schema_valid(const nlohmann::ordered_json& v, const nlohmann::ordered_json& s, const nlohmann::ordered_json& root);

}  // namespace lutq::testing
