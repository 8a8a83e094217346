// libFuzzer target for the JSON acceptor of constrained decoding (src/server/json_constraint.cc):
// arbitrary bytes fed one at a time. Whatever the acceptor declares complete must be a JSON
// object to nlohmann's parser, and it must accept nothing after that; every accepted prefix of a
// complete text is accepted again on a fresh acceptor (the state is a pure function of the bytes).
//
//   bash scripts/fuzz.sh   (or: build-fuzz/json_constraint_fuzz fuzz/corpus/json_constraint)
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/json_constraint.h"

namespace {

void require(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  lutq::server::JsonAcceptor a;
  size_t accepted = 0;
  while (accepted < text.size() && a.feed(text[accepted])) ++accepted;
  if (a.done()) {
    require(accepted == text.size() || !lutq::server::JsonAcceptor(a).feed(text[accepted]));
    const std::string_view prefix = text.substr(0, accepted);
    const nlohmann::json j = nlohmann::json::parse(prefix.begin(), prefix.end(), nullptr, false);
    require(!j.is_discarded() && j.is_object());
  }
  lutq::server::JsonAcceptor again;
  require(again.feed(text.substr(0, accepted)));
  return 0;
}
