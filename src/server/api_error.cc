// JSON rendering of ApiError.
#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace lutq::server {

std::string error_body(const ApiError& error) {
  nlohmann::json e = {{"message", error.message}, {"type", error.type}, {"param", nullptr}, {"code", nullptr}};
  if (!error.param.empty()) e["param"] = error.param;
  if (!error.code.empty()) e["code"] = error.code;
  // Messages may quote request text; replace invalid UTF-8 rather than throw while reporting.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lutq::server
