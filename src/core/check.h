// Internal invariant checks: abort with file:line. Never used for user input (see status.h).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace lutq::detail {
[[noreturn]] inline void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "lutq: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace lutq::detail

#define LUTQ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::lutq::detail::check_failed(#cond, __FILE__, __LINE__))
