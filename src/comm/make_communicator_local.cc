#include <cstdlib>
#include <string>

#include "comm/make_communicator.h"

namespace lutq::comm {

Result<std::unique_ptr<Communicator>> make_communicator(int*, char***) {
  const char* ranks = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (ranks != nullptr && std::string(ranks) != "1") {
    return Status::unsupported("started by mpirun with " + std::string(ranks) +
                               " ranks, but this lutq was built without MPI (install libopenmpi-dev and rebuild)");
  }
  return std::unique_ptr<Communicator>(std::make_unique<LocalCommunicator>());
}

}  // namespace lutq::comm
