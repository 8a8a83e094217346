// Metrics: counters under one mutex (updates are a few per token, far from contention).
#include "server/metrics.h"

#include <cstdio>

namespace lutq::server {
namespace {

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void counter_header(std::string& out, const char* name, const char* help, const char* type = "counter") {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number(kBounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_[kBounds.size()];
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
}
void Metrics::add_prompt_tokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(n);
}
void Metrics::add_generated_tokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  generated_tokens_ += static_cast<uint64_t>(n);
}
void Metrics::count_finish(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++finishes_[reason];
}
void Metrics::count_rejected() {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejected_;
}
void Metrics::observe_ttft(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
}
void Metrics::observe_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  latency_.observe(seconds);
}
void Metrics::observe_inter_token(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  inter_token_.observe(seconds);
}

std::string Metrics::render(const LiveGauges& live) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  counter_header(out, "lutq_requests_total", "HTTP requests by route and status code.");
  for (const auto& [key, n] : requests_) {
    out += "lutq_requests_total{route=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(n) + "\n";
  }
  counter_header(out, "lutq_generations_total", "Finished generations by finish reason.");
  for (const auto& [reason, n] : finishes_) {
    out += "lutq_generations_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  }
  counter_header(out, "lutq_rejected_total", "Requests refused with 429 because the queue was full.");
  out += "lutq_rejected_total " + std::to_string(rejected_) + "\n";
  counter_header(out, "lutq_prompt_tokens_total", "Prompt tokens prefilled.");
  out += "lutq_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  counter_header(out, "lutq_generated_tokens_total", "Tokens generated.");
  out += "lutq_generated_tokens_total " + std::to_string(generated_tokens_) + "\n";
  counter_header(out, "lutq_queue_depth", "Requests waiting for a sequence slot.", "gauge");
  out += "lutq_queue_depth " + std::to_string(live.queue_depth) + "\n";
  counter_header(out, "lutq_active_sequences", "Sequences holding a slot (prefilling or decoding).", "gauge");
  out += "lutq_active_sequences " + std::to_string(live.active_sequences) + "\n";
  counter_header(out, "lutq_slots", "Sequence slots (--parallel).", "gauge");
  out += "lutq_slots " + std::to_string(live.slots) + "\n";
  ttft_.render("lutq_time_to_first_token_seconds", "Time from submission to the first generated token.", out);
  inter_token_.render("lutq_inter_token_seconds", "Time between consecutive tokens of one sequence.", out);
  latency_.render("lutq_request_latency_seconds", "Time from submission to the end of a generation.", out);
  return out;
}

}  // namespace lutq::server
