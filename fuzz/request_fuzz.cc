// libFuzzer target for the server's request parser (src/server/request.cc): arbitrary bytes as a
// chat or completion body (first byte picks the endpoint). Parsing must never throw or crash;
// a success must satisfy the documented ranges, a failure must render an OpenAI error body
// that is valid JSON. The JSON Schema compiler and tool-call grammar are reached through
// response_format json_schema and tool_choice (seeds json_schema, tools); a compiled grammar
// must have a live start state.
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DLUTQ_FUZZ=ON && cmake --build build-fuzz --target request_fuzz
//   cp -r fuzz/corpus/request /tmp/rcorpus && build-fuzz/request_fuzz -dict=fuzz/request.dict -max_total_time=60 /tmp/rcorpus
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/request.h"

namespace {

void require(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using lutq::server::Endpoint;
  const Endpoint endpoint = (data[0] & 1) ? Endpoint::kCompletion : Endpoint::kChat;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  lutq::server::RequestLimits limits;
  limits.max_tokens = 512;
  const lutq::server::ParsedRequest p = lutq::server::parse_request(endpoint, body, limits);
  if (p.ok()) {
    const auto& r = *p.request;
    require(r.endpoint == endpoint);
    require(!r.max_tokens || (*r.max_tokens >= 1 && *r.max_tokens <= limits.max_tokens));
    require(r.temperature >= 0.0f && r.temperature <= 2.0f);
    require(r.top_p >= 0.0f && r.top_p <= 1.0f);
    require(r.top_k >= 0);
    require(r.stop.size() <= limits.max_stop);
    for (const auto& s : r.stop) require(!s.empty() && s.size() <= limits.max_stop_bytes);
    require(endpoint == Endpoint::kCompletion || !r.messages.empty());
    require(!r.grammar || !lutq::server::GrammarMatcher(r.grammar).dead());
  } else {
    require(p.error.http_status == 400);
    require(!p.error.message.empty());
    const auto j = nlohmann::json::parse(lutq::server::error_body(p.error));
    require(j.at("error").at("message").is_string());
  }
  return 0;
}
