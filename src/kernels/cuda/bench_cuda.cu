// lutq_bench_cuda: times the CUDA LUT-GEMM kernels y[m,n] = x[m,k]·W[n,k]^T against cuBLAS fp16
// GEMM at the same shapes, in the same run as a measured HBM bandwidth (a read kernel and a
// device-to-device copy). CUDA events, median of many reps, weights rotated over enough copies
// to exceed the L2 several times, so every timed call streams its weights from HBM.
// Usage: lutq_bench_cuda [--reps N] [--quick]   (scripts/bench_cuda.sh runs it after the tests)
// Nothing here has been run on a GPU yet.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_gemm.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/linear.h"

namespace lutq::kernels::cuda {
namespace {

constexpr size_t kRotateBytes = size_t{512} << 20;  // weights in rotation per timed case (> 10x an H100 L2)

[[noreturn]] void die(const Status& s) {
  std::fprintf(stderr, "bench_cuda: %s\n", s.message().c_str());
  std::exit(1);
}
void ok_or_die(const Status& s) {
  if (!s) die(s);
}
void ok_or_die(cudaError_t e, const char* what) { ok_or_die(cuda_status(e, what)); }
void ok_or_die(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) die(Status::unsupported(std::string("cuBLAS: ") + what + ": status " + std::to_string(e)));
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `call(rep)` with CUDA events per call; returns the median in ms.
template <typename F>
double time_ms(int reps, cudaStream_t stream, F call) {
  cudaEvent_t start, stop;
  ok_or_die(cudaEventCreate(&start), "cudaEventCreate");
  ok_or_die(cudaEventCreate(&stop), "cudaEventCreate");
  for (int r = 0; r < 3; ++r) call(r);  // warm-up
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    ok_or_die(cudaEventRecord(start, stream), "cudaEventRecord");
    call(r);
    ok_or_die(cudaEventRecord(stop, stream), "cudaEventRecord");
    ok_or_die(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0.0f;
    ok_or_die(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  ok_or_die(cudaEventDestroy(start), "cudaEventDestroy");
  ok_or_die(cudaEventDestroy(stop), "cudaEventDestroy");
  return median(ms);
}

__global__ void read_kernel(const uint4* p, size_t count, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads; practically never written
}

// Read bandwidth (GB/s) of a 1 GiB buffer by a streaming kernel, and the copy bandwidth (bytes
// read + written) of a device-to-device cudaMemcpy.
void measure_bandwidth(int reps, cudaStream_t stream, int sms, double* read_gbs, double* copy_gbs) {
  const size_t bytes = size_t{1} << 30;
  void* a = nullptr;
  void* b = nullptr;
  unsigned* sink = nullptr;
  ok_or_die(cudaMalloc(&a, bytes), "cudaMalloc");
  ok_or_die(cudaMalloc(&b, bytes), "cudaMalloc");
  ok_or_die(cudaMalloc(&sink, sizeof(unsigned)), "cudaMalloc");
  ok_or_die(cudaMemset(a, 1, bytes), "cudaMemset");
  const double read_ms = time_ms(reps, stream, [&](int) {
    read_kernel<<<sms * 8, 256, 0, stream>>>(static_cast<const uint4*>(a), bytes / sizeof(uint4), sink);
  });
  ok_or_die(cudaGetLastError(), "read kernel");
  const double copy_ms = time_ms(reps, stream, [&](int) {
    ok_or_die(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  });
  *read_gbs = static_cast<double>(bytes) / (read_ms * 1e6);
  *copy_gbs = 2.0 * static_cast<double>(bytes) / (copy_ms * 1e6);
  ok_or_die(cudaFree(a), "cudaFree");
  ok_or_die(cudaFree(b), "cudaFree");
  ok_or_die(cudaFree(sink), "cudaFree");
}

// A random BCQ matrix; planes and scales are random (speed does not depend on values).
format::BcqMatrix random_matrix(int64_t n, int64_t k, int q, int64_t g, std::mt19937_64& rng) {
  format::BcqMatrix w = format::make_empty(n, k, format::BcqConfig{q, g, format::Orientation::kPerOC, false}).value();
  for (size_t i = 0; i < w.bits.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(w.bits.data() + i, &v, std::min<size_t>(8, w.bits.size() - i));
  }
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (auto& a : w.alpha) a = __half_as_ushort(__float2half(std::fabs(d(rng))));
  return w;
}

struct Shape {
  int64_t n, k;
};

int run(int argc, char** argv) {
  int reps = 200;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(5, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: lutq_bench_cuda [--reps N] [--quick]\n");
      return 2;
    }
  }
  if (!backend(Isa::kCuda).available(detect_cpu())) die(Status::unsupported(cuda_unavailable_reason()));
  int dev = 0;
  cudaDeviceProp prop{};
  ok_or_die(cudaGetDevice(&dev), "cudaGetDevice");
  ok_or_die(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  cudaStream_t stream = nullptr;
  ok_or_die(cudaStreamCreate(&stream), "cudaStreamCreate");
  double read_gbs = 0.0, copy_gbs = 0.0;
  measure_bandwidth(std::min(reps, 50), stream, prop.multiProcessorCount, &read_gbs, &copy_gbs);
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("measured HBM bandwidth: read kernel %.0f GB/s, device-to-device copy %.0f GB/s (read + write)\n", read_gbs,
              copy_gbs);
  std::printf("%% of bw = (packed weight bytes / time) / read-kernel bandwidth; weights rotated over >= 512 MiB\n\n");
  std::printf("%-12s %2s %4s %3s %-5s %3s %9s %9s %8s %7s %11s %8s\n", "n x k", "q", "g", "m", "path", "mu", "ms", "MB",
              "GB/s", "% bw", "cuBLAS ms", "speedup");

  cublasHandle_t blas = nullptr;
  ok_or_die(cublasCreate(&blas), "cublasCreate");
  ok_or_die(cublasSetStream(blas, stream), "cublasSetStream");
  std::mt19937_64 rng(1234);
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{4096, 4096}}
                                          : std::vector<Shape>{{4096, 4096}, {11008, 4096}, {7168, 28672}};
  const std::vector<int> ms = quick ? std::vector<int>{1, 8} : std::vector<int>{1, 4, 8, 16, 32};
  for (const Shape& sh : shapes) {
    // Activations (fp16, largest m) and outputs.
    std::vector<__half> xh(static_cast<size_t>(kMaxM * sh.k));
    std::normal_distribution<float> dx(0.0f, 1.0f);
    for (auto& v : xh) v = __float2half(dx(rng));
    void* x = nullptr;
    float* y = nullptr;
    ok_or_die(cudaMalloc(&x, xh.size() * sizeof(__half)), "cudaMalloc");
    ok_or_die(cudaMalloc(&y, static_cast<size_t>(kMaxM * sh.n) * sizeof(float)), "cudaMalloc");
    ok_or_die(cudaMemcpy(x, xh.data(), xh.size() * sizeof(__half), cudaMemcpyHostToDevice), "cudaMemcpy");

    // cuBLAS fp16 dense weights (fp32 accumulate and output), rotated the same way.
    const size_t dense_bytes = static_cast<size_t>(sh.n * sh.k) * sizeof(__half);
    const int dense_copies = static_cast<int>(std::max<size_t>(1, (kRotateBytes + dense_bytes - 1) / dense_bytes));
    std::vector<void*> dense(static_cast<size_t>(dense_copies));
    for (auto& d : dense) {
      ok_or_die(cudaMalloc(&d, dense_bytes), "cudaMalloc(dense)");
      ok_or_die(cudaMemset(d, 0x1c, dense_bytes), "cudaMemset(dense)");  // 0x1c1c: a small fp16 value
    }
    std::vector<double> cublas_ms(static_cast<size_t>(kMaxM + 1), 0.0);
    for (int m : ms) {
      const float one = 1.0f, zero = 0.0f;
      cublas_ms[static_cast<size_t>(m)] = time_ms(reps, stream, [&](int r) {
        ok_or_die(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(sh.n), m, static_cast<int>(sh.k), &one,
                               dense[static_cast<size_t>(r % dense_copies)], CUDA_R_16F, static_cast<int>(sh.k), x,
                               CUDA_R_16F, static_cast<int>(sh.k), &zero, y, CUDA_R_32F, static_cast<int>(sh.n),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublasGemmEx");
      });
    }
    for (void* d : dense) ok_or_die(cudaFree(d), "cudaFree(dense)");

    for (int q : {2, 3, 4}) {
      const int64_t g = 128;
      const format::BcqMatrix w = random_matrix(sh.n, sh.k, q, g, rng);
      // Repack once on the host, then place enough copies on the device to rotate through.
      const PackedMatrix host = cuda_backend().repack(w, Precision::kExact);
      const size_t bytes = host.data.size();
      const int copies = static_cast<int>(std::max<size_t>(2, (kRotateBytes + bytes - 1) / bytes));
      std::vector<PackedMatrix> placed(static_cast<size_t>(copies));
      for (auto& p : placed) {
        p.isa = host.isa;
        p.precision = host.precision;
        p.source = host.source;
        p.row_tile = host.row_tile;
        p.data = AlignedBuffer(bytes);
        std::memcpy(p.data.data(), host.data.data(), bytes);
        ok_or_die(cuda_backend().place(p));
        p.data = AlignedBuffer();  // the host copy is no longer needed
      }
      for (int m : ms) {
        struct Variant {
          Path path;
          int mu;
        };
        std::vector<Variant> variants{{Path::kAuto, 4}, {Path::kMma, 4}};
        if (m <= kLutMaxM) {
          variants.push_back({Path::kLut, 4});
          variants.push_back({Path::kLut, 8});
        }
        for (const Variant& v : variants) {
          const GemmOptions opt{v.path, v.mu, 0};
          const Status probe = gemm_device(placed[0], Activation::kF16, x, m, y, stream, opt);
          if (!probe) {
            std::printf("%5lldx%-6lld %2d %4lld %3d %-5s %3d  skipped: %s\n", static_cast<long long>(sh.n),
                        static_cast<long long>(sh.k), q, static_cast<long long>(g), m, path_name(v.path), v.mu,
                        probe.message().c_str());
            continue;
          }
          const double t = time_ms(reps, stream, [&](int r) {
            ok_or_die(gemm_device(placed[static_cast<size_t>(r % copies)], Activation::kF16, x, m, y, stream, opt));
          });
          ok_or_die(cudaStreamSynchronize(stream), "kernel execution");
          const double gbs = static_cast<double>(bytes) / (t * 1e6);
          const double cb = cublas_ms[static_cast<size_t>(m)];
          const char* shown = v.path == Path::kAuto ? (choose_path(m, sh.n, sh.k, q) == Path::kLut ? "auto=lut" : "auto=mma")
                                                    : path_name(v.path);
          std::printf("%5lldx%-6lld %2d %4lld %3d %-8s %2d %9.4f %9.2f %8.0f %6.1f%% %11.4f %7.2fx\n",
                      static_cast<long long>(sh.n), static_cast<long long>(sh.k), q, static_cast<long long>(g), m, shown,
                      v.mu, t, static_cast<double>(bytes) / 1e6, gbs, 100.0 * gbs / read_gbs, cb, cb / t);
        }
      }
    }
    ok_or_die(cudaFree(x), "cudaFree");
    ok_or_die(cudaFree(y), "cudaFree");
  }
  ok_or_die(cublasDestroy(blas), "cublasDestroy");
  ok_or_die(cudaStreamDestroy(stream), "cudaStreamDestroy");
  return 0;
}

}  // namespace
}  // namespace lutq::kernels::cuda

int main(int argc, char** argv) { return lutq::kernels::cuda::run(argc, argv); }
