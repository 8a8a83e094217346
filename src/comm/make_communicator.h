// The communicator main hands down: MPI's when this lutq was built with MPI and started by an MPI
// launcher (mpirun), else the local one. Two definitions, one per build (CMakeLists.txt picks
// make_communicator_mpi.cc when find_package(MPI) succeeds, make_communicator_local.cc otherwise).
#pragma once

#include <memory>

#include "core/communicator.h"
#include "core/status.h"

namespace lutq::comm {

Result<std::unique_ptr<Communicator>> make_communicator(int* argc, char*** argv);

}  // namespace lutq::comm
