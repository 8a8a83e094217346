// The CUDA backend's own entry points, beyond the kernel table (kernels/kernel.h): GEMM on
// device-resident activations and outputs (for GPU-resident decoding), the LUT-or-MMA policy, and
// the launch options the benchmark and tests use to pin a path. Design: docs/kernels.md, "CUDA".
// Nothing here has been run on a GPU yet.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/kernel.h"

namespace lutq::kernels::cuda {

enum class Activation : uint8_t { kF16 = 0, kBF16 = 1 };
// kLut: tables of partial sums in shared memory (q <= 4, m <= kLutMaxM). kMma: weights
// dequantized into registers, fp16/bf16 tensor-core mma.sync with fp32 accumulation (any q, m).
enum class Path : uint8_t { kAuto = 0, kLut = 1, kMma = 2 };

constexpr int64_t kLutMaxM = 4;
constexpr int kLutMaxQ = 4;

struct GemmOptions {
  Path path = Path::kAuto;
  int mu = 4;  // LUT chunk width: 4 or 8 activations per table (docs/kernels.md explains 4)
  int ksplit = 0;  // K split across blocks; 0 = chosen from the shape and the SM count
};

const char* path_name(Path p);
const char* activation_name(Activation a);

// The policy: which kernel runs a shape when the caller does not pin one. A guess until it is
// measured on a GPU (scripts/bench_cuda.sh prints both paths per shape): LUT for m = 1 and for
// m = 2 with q <= 2, when q <= 4 and k >= 256 (below that the table build is not amortized);
// MMA otherwise.
Path choose_path(int64_t m, int64_t n, int64_t k, int q);

// y[m,n] (fp32, device memory, row stride n) = x[m,k] (device memory, fp16 or bf16, row stride
// k) · W^T for a matrix placed by the cuda backend (BcqLinear::create with Isa::kCuda), on
// `stream` (a cudaStream_t; nullptr = the default stream). 1 <= m <= kMaxM. Asynchronous: errors
// of the launch come back here, errors during execution at the next synchronizing call.
Status gemm_device(const PackedMatrix& w, Activation act, const void* x, int64_t m, float* y, void* stream,
                   const GemmOptions& opt = {});

// Bytes the kernels read for the weights of a placed matrix (bits, scales, offsets).
int64_t device_weight_bytes(const PackedMatrix& w);

}  // namespace lutq::kernels::cuda
