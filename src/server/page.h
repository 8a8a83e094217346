// The minimal chat page served at GET /: plain HTML and JavaScript embedded in the binary (no
// build step), talking to /v1/chat/completions with streaming.
#pragma once

#include <string_view>

namespace lutq::server {

std::string_view chat_page_html();

}  // namespace lutq::server
