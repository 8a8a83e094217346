#include "comm/mpi_communicator.h"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace lutq::comm {
namespace {

// "MPI_Allreduce: <the library's message>", or ok.
Status mpi_status(int code, const char* what) {
  if (code == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  return Status(StatusCode::kIoError, std::string(what) + ": " + std::string(text, static_cast<size_t>(len)));
}

}  // namespace

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::init(int* argc, char*** argv) {
  // Serialized: `lutq serve` makes its MPI calls from the scheduler thread, and the last (the stop
  // step) from the main thread, never two at once.
  int provided = 0;
  if (Status s = mpi_status(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread"); !s) {
    return s;
  }
  if (Status s = mpi_status(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
      !s) {
    return s;
  }
  int rank = 0;
  int size = 1;
  if (Status s = mpi_status(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank"); !s) return s;
  if (Status s = mpi_status(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size"); !s) return s;
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(rank, size));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized == 0) MPI_Finalize();
}

Status MpiCommunicator::all_reduce_sum(float* data, int64_t n) {
  if (size_ == 1 || n == 0) return Status::ok();
  if (n < 0 || n > INT_MAX) return Status::invalid("all_reduce_sum: " + std::to_string(n) + " elements");
  const auto t0 = std::chrono::steady_clock::now();
  const int code = MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  stats_.all_reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++stats_.all_reduce_calls;
  stats_.all_reduce_bytes += n * static_cast<int64_t>(sizeof(float));
  return mpi_status(code, "MPI_Allreduce");
}

Status MpiCommunicator::all_gather(const float* mine, float* all, const std::vector<int64_t>& counts) {
  if (static_cast<int>(counts.size()) != size_) {
    return Status::invalid("all_gather: " + std::to_string(counts.size()) + " counts for " + std::to_string(size_) +
                           " ranks");
  }
  std::vector<int> n(counts.size());
  std::vector<int> at(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0 || total + counts[r] > INT_MAX) return Status::invalid("all_gather: counts exceed INT_MAX");
    n[r] = static_cast<int>(counts[r]);
    at[r] = static_cast<int>(total);
    total += counts[r];
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int code = MPI_Allgatherv(mine, n[static_cast<size_t>(rank_)], MPI_FLOAT, all, n.data(), at.data(), MPI_FLOAT,
                                  MPI_COMM_WORLD);
  stats_.all_gather_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++stats_.all_gather_calls;
  stats_.all_gather_bytes += total * static_cast<int64_t>(sizeof(float));
  return mpi_status(code, "MPI_Allgatherv");
}

Status MpiCommunicator::broadcast(void* data, int64_t size, int root) {
  if (size_ == 1 || size == 0) return Status::ok();
  if (size < 0 || size > INT_MAX) return Status::invalid("broadcast: " + std::to_string(size) + " bytes");
  ++stats_.broadcast_calls;
  stats_.broadcast_bytes += size;
  return mpi_status(MPI_Bcast(data, static_cast<int>(size), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

Status MpiCommunicator::broadcast_idle(void* data, int64_t size, int root) {
  if (size_ == 1 || size == 0) return Status::ok();
  if (size < 0 || size > INT_MAX) return Status::invalid("broadcast: " + std::to_string(size) + " bytes");
  ++stats_.broadcast_calls;
  stats_.broadcast_bytes += size;
  MPI_Request request = MPI_REQUEST_NULL;
  if (Status s = mpi_status(MPI_Ibcast(data, static_cast<int>(size), MPI_BYTE, root, MPI_COMM_WORLD, &request),
                            "MPI_Ibcast");
      !s) {
    return s;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto nap = std::chrono::microseconds(20);
  while (true) {
    int done = 0;
    if (Status s = mpi_status(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test"); !s) return s;
    if (done != 0) return Status::ok();
    if (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1)) continue;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
}

Status MpiCommunicator::barrier() { return mpi_status(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void MpiCommunicator::silence_other_ranks() {
  if (rank_ == 0 || error_fd_ != 2) return;
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved = dup(2);
  const int null = open("/dev/null", O_WRONLY);
  if (saved < 0 || null < 0) return;  // nothing redirected: the rank stays as loud as rank 0
  error_fd_ = saved;
  dup2(null, 1);
  dup2(null, 2);
  close(null);
}

void MpiCommunicator::abort(const std::string& message) {
  std::fflush(stdout);
  std::fflush(stderr);
  dprintf(error_fd_, "lutq: error: rank %d of %d: %s\n", rank_, size_, message.c_str());
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; this keeps [[noreturn]] honest if it ever did
}

std::string MpiCommunicator::describe() const { return "mpi, " + std::to_string(size_) + " ranks"; }

}  // namespace lutq::comm
