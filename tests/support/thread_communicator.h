// N ranks as N threads of one process, for testing tensor parallelism without MPI: each rank's
// ThreadCommunicator sums and broadcasts through buffers the group shares, with a barrier between
// the phases. Every rank sums the ranks' values in rank order, so all get the same result (as an
// MPI all-reduce does).
#pragma once

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/communicator.h"

namespace lutq::testing {

class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), sync_(size), slots_(static_cast<size_t>(size), nullptr) {}
  int size() const { return size_; }

 private:
  friend class ThreadCommunicator;
  int size_;
  std::barrier<> sync_;
  std::vector<void*> slots_;  // each rank's buffer of the current operation
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size(); }
  Status all_reduce_sum(float* data, int64_t n) override {
    group_.slots_[static_cast<size_t>(rank_)] = data;
    group_.sync_.arrive_and_wait();
    std::vector<float> sum(static_cast<size_t>(n), 0.0f);
    for (void* slot : group_.slots_) {
      const auto* x = static_cast<const float*>(slot);
      for (int64_t i = 0; i < n; ++i) sum[static_cast<size_t>(i)] += x[i];
    }
    group_.sync_.arrive_and_wait();  // every rank has read every buffer
    std::memcpy(data, sum.data(), sum.size() * sizeof(float));
    ++stats_.all_reduce_calls;
    stats_.all_reduce_bytes += n * static_cast<int64_t>(sizeof(float));
    return Status::ok();
  }
  Status all_gather(const float* mine, float* all, const std::vector<int64_t>& counts) override {
    group_.slots_[static_cast<size_t>(rank_)] = const_cast<float*>(mine);
    group_.sync_.arrive_and_wait();
    std::vector<float> out;
    for (size_t r = 0; r < counts.size(); ++r) {
      const auto* x = static_cast<const float*>(group_.slots_[r]);
      out.insert(out.end(), x, x + counts[r]);
    }
    group_.sync_.arrive_and_wait();
    std::memcpy(all, out.data(), out.size() * sizeof(float));
    return Status::ok();
  }
  Status broadcast(void* data, int64_t size, int root) override {
    group_.slots_[static_cast<size_t>(rank_)] = data;
    group_.sync_.arrive_and_wait();
    if (rank_ != root) std::memcpy(data, group_.slots_[static_cast<size_t>(root)], static_cast<size_t>(size));
    group_.sync_.arrive_and_wait();
    return Status::ok();
  }
  Status barrier() override {
    group_.sync_.arrive_and_wait();
    return Status::ok();
  }
  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "ThreadCommunicator: rank %d aborts: %s\n", rank_, message.c_str());
    std::abort();
  }
  std::string describe() const override { return "threads, " + std::to_string(size()) + " ranks"; }
  CommStats stats() const override { return stats_; }

 private:
  ThreadGroup& group_;
  int rank_;
  CommStats stats_;
};

}  // namespace lutq::testing
