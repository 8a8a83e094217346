// Stop strings over streamed text: text is released as soon as it cannot be the start of a stop
// string, and generation ends at the first complete stop string (which, like everything after
// it, is never released), as OpenAI's `stop` behaves.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lutq::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends text; returns what is safe to emit. Sets *hit when a stop string completed (the
  // returned text then ends right before it, and the matcher holds nothing).
  std::string push(std::string_view text, bool* hit);
  // The held-back tail (a partial stop string) once generation ends for another reason.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace lutq::server
