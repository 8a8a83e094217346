// The cuda slot of the kernel table in a build without CUDA (LUTQ_CUDA=OFF): never available, and
// a request for it says so instead of failing obscurely.
#include "kernels/kernel.h"

namespace lutq::kernels {
namespace {

constexpr const char* kReason = "lutq was built without CUDA (reconfigure with -DLUTQ_CUDA=ON and a CUDA toolkit)";

bool cuda_available(const CpuFeatures&) { return false; }

Status cuda_check(const format::BcqMatrix&, Precision) { return Status::unsupported(kReason); }

}  // namespace

std::string cuda_unavailable_reason() { return kReason; }

const Backend& cuda_backend() {
  static const Backend kBackend{Isa::kCuda, cuda_available, cuda_check, nullptr, nullptr, nullptr, nullptr};
  return kBackend;
}

}  // namespace lutq::kernels
