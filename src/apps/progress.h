// A progress line on stderr for long work (quantizing, calibrating, perplexity): percentage,
// elapsed time and an estimate of the time left. On a terminal it redraws one line; otherwise
// (logs, CI) it prints a line at most every 10 % so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace lutq::apps {

class ProgressLine {
 public:
  explicit ProgressLine(std::string label)
      : label_(std::move(label)), tty_(isatty(fileno(stderr)) != 0), t0_(std::chrono::steady_clock::now()) {}

  // done of total units finished; `what` names the current item.
  void update(int64_t done, int64_t total, const std::string& what) {
    if (total <= 0) return;
    const int pct = static_cast<int>(100 * done / total);
    if (!tty_ && pct / 10 == last_decile_ && done != total) return;
    last_decile_ = pct / 10;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double left = done > 0 ? elapsed * static_cast<double>(total - done) / static_cast<double>(done) : 0.0;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * done / total);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "%s%s [%s] %3d%% %lld/%lld  %.0fs elapsed, ~%.0fs left  %-32.32s%s", tty_ ? "\r" : "",
                 label_.c_str(), bar.c_str(), pct, static_cast<long long>(done), static_cast<long long>(total), elapsed,
                 left, what.c_str(), tty_ ? "" : "\n");
    if (tty_ && done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_;
  int last_decile_ = -1;
};

}  // namespace lutq::apps
