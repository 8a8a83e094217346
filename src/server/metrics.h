// Server counters and histograms, rendered in the Prometheus text exposition format (GET
// /metrics). Thread-safe: HTTP handlers and the scheduler thread update them concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace lutq::server {

// Cumulative histogram with fixed upper bounds in seconds (plus +Inf), Prometheus style.
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  void observe(double seconds);
  // Appends the _bucket, _sum and _count lines of `name`.
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  std::array<uint64_t, kBounds.size() + 1> counts_{};  // last = +Inf only
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// Live values the scheduler owns, sampled at render time.
struct LiveGauges {
  int64_t queue_depth = 0;
  int64_t active_sequences = 0;
  int64_t slots = 0;
};

class Metrics {
 public:
  // A finished HTTP request: route label (a fixed set, "other" for anything else) and status.
  void count_request(const std::string& route, int status);
  void add_prompt_tokens(int64_t n);
  void add_generated_tokens(int64_t n);
  void count_finish(const std::string& reason);  // stop, length, cancelled, error
  void count_rejected();                         // 429: queue full
  void observe_ttft(double seconds);             // submit → first token
  void observe_latency(double seconds);          // submit → finish of a generation
  void observe_inter_token(double seconds);      // between consecutive tokens of a sequence

  std::string render(const LiveGauges& live) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> finishes_;
  uint64_t rejected_ = 0;
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  Histogram ttft_;
  Histogram latency_;
  Histogram inter_token_;
};

}  // namespace lutq::server
