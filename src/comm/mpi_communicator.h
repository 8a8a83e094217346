// MpiCommunicator: the Communicator over MPI_COMM_WORLD (Open MPI: shared memory between ranks of
// one host, TCP between hosts). Errors come back as Status (MPI_ERRORS_RETURN on the
// communicator), never as an MPI abort, except through abort().
//
// One object per process, made by main: init() calls MPI_Init, the destructor MPI_Finalize.
#pragma once

#include <memory>
#include <string>

#include "core/communicator.h"
#include "core/status.h"

namespace lutq::comm {

class MpiCommunicator final : public Communicator {
 public:
  // MPI_Init(argc, argv); the MPI library may remove its own arguments.
  static Result<std::unique_ptr<MpiCommunicator>> init(int* argc, char*** argv);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status all_reduce_sum(float* data, int64_t n) override;
  Status all_gather(const float* mine, float* all, const std::vector<int64_t>& counts) override;
  Status broadcast(void* data, int64_t size, int root = 0) override;
  // MPI_Ibcast, then MPI_Test: spinning for the first millisecond, then sleeping between tests
  // (up to 1 ms), so an idle follower costs no core.
  Status broadcast_idle(void* data, int64_t size, int root = 0) override;
  Status barrier() override;
  [[noreturn]] void abort(const std::string& message) override;
  std::string describe() const override;
  CommStats stats() const override { return stats_; }
  void silence_other_ranks() override;

 private:
  MpiCommunicator(int rank, int size) : rank_(rank), size_(size) {}

  int rank_ = 0;
  int size_ = 1;
  CommStats stats_;
  int error_fd_ = 2;  // the original stderr, kept by silence_other_ranks()
};

// True when this process was started by an MPI launcher (mpirun / mpiexec sets OMPI_COMM_WORLD_SIZE
// or PMIX_RANK): only then does main initialise MPI.
bool launched_by_mpi();

}  // namespace lutq::comm
