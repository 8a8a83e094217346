// The AVX-512 slot of the kernel table. No AVX-512 kernel is implemented yet: the machines this
// project is developed and tested on (AMD Zen 3) have no AVX-512, and a SIMD kernel that no test
// has run is not shipped. The slot reports itself unavailable, so dispatch never picks it and
// LUTQ_ISA=avx512 is a clear error. The port plan is in docs/kernels.md ("AVX-512").
#include "kernels/kernel.h"

namespace lutq::kernels {
namespace {

bool avx512_available(const CpuFeatures&) { return false; }

Status avx512_check(const format::BcqMatrix&, Precision) {
  return Status::unsupported("the avx512 backend is not implemented yet; use avx2");
}

}  // namespace

const Backend& avx512_backend() {
  static const Backend kBackend{Isa::kAvx512, avx512_available, avx512_check, nullptr, nullptr, nullptr, nullptr};
  return kBackend;
}

}  // namespace lutq::kernels
