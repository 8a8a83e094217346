// An error as the OpenAI API reports it: an HTTP status and the body
//   {"error": {"message": ..., "type": ..., "param": ... | null, "code": ... | null}}
// Every 4xx/5xx answer of `lutq serve` has this shape, so OpenAI clients raise their usual errors.
#pragma once

#include <string>
#include <utility>

namespace lutq::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" is sent as null
  std::string code;   // "" is sent as null

  static ApiError invalid(std::string message, std::string param = "", std::string code = "") {
    return ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
  }
};

// The JSON body of an error response.
std::string error_body(const ApiError& error);

}  // namespace lutq::server
