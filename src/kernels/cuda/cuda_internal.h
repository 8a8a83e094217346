// Internals shared by the CUDA backend's host code (cuda_backend.cc) and kernels
// (cuda_kernels.cu): the uploaded matrix, the kernel arguments, the launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "core/status.h"
#include "format/bcq_matrix.h"
#include "kernels/cuda/cuda_gemm.h"
#include "kernels/cuda/cuda_layout.h"

namespace lutq::kernels::cuda {

// A CUDA call's result as a Status naming the call.
inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return Status(StatusCode::kUnsupported, std::string("CUDA: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                              cudaGetErrorString(err) + ")");
}

// A matrix's layout in device memory plus the scratch of the host-pointer entry point.
struct DeviceMatrix {
  DeviceMatrix() = default;
  DeviceMatrix(const DeviceMatrix&) = delete;
  DeviceMatrix& operator=(const DeviceMatrix&) = delete;
  ~DeviceMatrix();

  format::BcqMatrix shape;  // n, k, cfg (no buffers)
  Layout layout;
  uint8_t* weights = nullptr;  // layout.bytes of device memory
  int device = 0;
  int sms = 1;  // multiprocessors of `device`, for the K split

  // Host entry point (gemm_status): one call at a time per matrix.
  std::mutex host_mutex;
  cudaStream_t stream = nullptr;
  void* x_scratch = nullptr;  // fp16 activations, kMaxM * k
  float* y_scratch = nullptr;  // kMaxM * n
};

// Everything a kernel reads, by value.
struct KernelArgs {
  const uint32_t* bits = nullptr;
  const uint16_t* alpha = nullptr;  // fp16 bit patterns
  const uint16_t* offset = nullptr;  // nullptr without offset
  const void* x = nullptr;  // fp16 or bf16, [m][k]
  float* out = nullptr;  // ksplit == 1: y [m][n]; else partial sums [ksplit][m][n]
  int m = 1;
  int q = 1;
  int64_t n = 0, k = 0, g = 0;
  int64_t tiles = 0, words = 0, groups = 0;
  int64_t words_per_split = 0;
  bool per_ic = false;
  bool has_offset = false;
};

constexpr int kWarpsPerBlock = 4;  // each warp owns one 32-row tile
constexpr int kLutSmemBudget = 48 * 1024;  // dynamic shared memory of one LUT block

// Activation words (of 32) per shared-memory tile of the LUT kernel; 0 when not even one word fits.
int lut_tile_words(const KernelArgs& a, int mu);

Status launch_lut(const KernelArgs& a, Activation act, int mu, int ksplit, cudaStream_t stream);
Status launch_mma(const KernelArgs& a, Activation act, int ksplit, cudaStream_t stream);
// y[mm][r] = Σ_s partial[s][mm][r], in order of s.
Status launch_reduce(const float* partial, float* y, int64_t m, int64_t n, int ksplit, cudaStream_t stream);

}  // namespace lutq::kernels::cuda
