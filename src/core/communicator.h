// Communicator: the collective operations tensor parallelism needs (docs/scale-out.md). A model
// split over N ranks calls all_reduce_sum after each row-split linear layer; the apps broadcast
// what rank 0 decides (sampled tokens) so that every rank runs the same steps.
//
// LocalCommunicator is the single-process one (rank 0 of 1: every operation is a no-op). The MPI
// one lives in src/comm (library lutq_mpi, built only when CMake finds MPI). Every operation
// returns a Status; abort() ends every rank of the job with a message and does not return, so a
// rank that cannot go on never leaves the others waiting in a collective.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/status.h"

namespace lutq {

// What a communicator has exchanged so far (for the figures in docs/scale-out.md).
struct CommStats {
  int64_t all_reduce_calls = 0;
  int64_t all_reduce_bytes = 0;  // payload bytes handed to all_reduce_sum
  double all_reduce_seconds = 0.0;
  int64_t all_gather_calls = 0;
  int64_t all_gather_bytes = 0;  // bytes this rank receives
  double all_gather_seconds = 0.0;
  int64_t broadcast_calls = 0;
  int64_t broadcast_bytes = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[0..n) = the element-wise sum of every rank's data[0..n).
  virtual Status all_reduce_sum(float* data, int64_t n) = 0;
  // Every rank's mine[0..counts[rank]) concatenated in rank order into all[0..Σcounts) on every rank.
  virtual Status all_gather(const float* mine, float* all, const std::vector<int64_t>& counts) = 0;
  // bytes [0, size) of root's data copied to every rank's data.
  virtual Status broadcast(void* data, int64_t size, int root = 0) = 0;
  // broadcast() for a rank that may wait long for it (a serve follower between requests): the
  // implementation may poll and sleep instead of spinning. All ranks of one broadcast must call
  // the same one of the two.
  virtual Status broadcast_idle(void* data, int64_t size, int root = 0) { return broadcast(data, size, root); }
  virtual Status barrier() = 0;
  // Writes "lutq: error: rank R: message" to the error stream and ends every rank with exit code 1.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
  // "local" or e.g. "mpi, 2 ranks".
  virtual std::string describe() const = 0;
  virtual CommStats stats() const { return {}; }
  // Ranks other than 0 send stdout and stderr to /dev/null from now on (rank 0 prints for the
  // job); abort() still reaches the original error stream.
  virtual void silence_other_ranks() {}
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Status all_reduce_sum(float*, int64_t) override { return Status::ok(); }
  Status all_gather(const float* mine, float* all, const std::vector<int64_t>& counts) override {
    if (mine != all && !counts.empty()) std::copy_n(mine, counts[0], all);
    return Status::ok();
  }
  Status broadcast(void*, int64_t, int) override { return Status::ok(); }
  Status barrier() override { return Status::ok(); }
  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "lutq: error: %s\n", message.c_str());
    std::exit(1);
  }
  std::string describe() const override { return "local"; }
};

}  // namespace lutq
