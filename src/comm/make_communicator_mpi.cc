#include "comm/make_communicator.h"
#include "comm/mpi_communicator.h"

namespace lutq::comm {

Result<std::unique_ptr<Communicator>> make_communicator(int* argc, char*** argv) {
  if (!launched_by_mpi()) return std::unique_ptr<Communicator>(std::make_unique<LocalCommunicator>());
  Result<std::unique_ptr<MpiCommunicator>> mpi = MpiCommunicator::init(argc, argv);
  if (!mpi) return mpi.status();
  return std::unique_ptr<Communicator>(std::move(*mpi));
}

}  // namespace lutq::comm
