// The cuda row of the kernel table (kernels/kernel.h) and the device entry point (cuda_gemm.h):
// device detection, shape checks, host-side repack (cuda_layout.h), upload, the K-split and
// LUT-or-MMA policy, and the host-pointer GEMM that copies fp32 activations in (as fp16) and
// fp32 outputs out so BcqLinear and the kernel grid run unchanged. Never run on a GPU yet.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/cuda/cuda_internal.h"

namespace lutq::kernels {
namespace cuda {
namespace {

constexpr int64_t kMinWordsPerSplit = 8;  // 256 activations: below this a split costs more than it gives

bool cuda_available(const CpuFeatures&) {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Status cuda_check(const format::BcqMatrix& w, Precision) {
  if (w.k % kWordBits != 0) {
    return Status::unsupported("k = " + std::to_string(w.k) + " is not a multiple of 32 (the CUDA kernels read 32-bit words)");
  }
  return Status::ok();
}

// The host layout only; `place` uploads it. Precision does not apply: the tables are fp32 and
// the MMA weights fp16/bf16 whatever the request (docs/kernels.md, "CUDA").
PackedMatrix cuda_repack(const format::BcqMatrix& w, Precision p) {
  PackedMatrix out;
  out.isa = Isa::kCuda;
  out.precision = p;
  out.source.n = w.n;
  out.source.k = w.k;
  out.source.cfg = w.cfg;
  out.data = repack_layout(w);
  out.row_tile = kTileRows;
  return out;
}

format::BcqMatrix cuda_unpack(const PackedMatrix& w) { return unpack_layout(w.source, w.data.data()); }

const DeviceMatrix* device_of(const PackedMatrix& w) { return static_cast<const DeviceMatrix*>(w.device.get()); }

Status cuda_place(PackedMatrix& w) {
  auto dev = std::make_shared<DeviceMatrix>();
  dev->shape = w.source;
  dev->layout = layout_of(w.source);
  if (Status s = cuda_status(cudaGetDevice(&dev->device), "cudaGetDevice"); !s) return s;
  if (Status s = cuda_status(cudaDeviceGetAttribute(&dev->sms, cudaDevAttrMultiProcessorCount, dev->device),
                             "cudaDeviceGetAttribute(multiprocessors)");
      !s) {
    return s;
  }
  if (Status s = cuda_status(cudaMalloc(&dev->weights, dev->layout.bytes), "cudaMalloc(weights)"); !s) return s;
  if (Status s = cuda_status(cudaMemcpy(dev->weights, w.data.data(), dev->layout.bytes, cudaMemcpyHostToDevice),
                             "cudaMemcpy(weights)");
      !s) {
    return s;
  }
  w.device = std::move(dev);
  return Status::ok();
}

Status cuda_gemm_status(const PackedMatrix& w, const float* x, int64_t m, float* y) {
  auto* dev = const_cast<DeviceMatrix*>(device_of(w));  // the scratch is guarded by host_mutex
  if (dev == nullptr) return Status::invalid("cuda gemm: the matrix was not placed on the device (use BcqLinear::create)");
  if (m < 1 || m > kMaxM) return Status::invalid("cuda gemm: m must be 1..32 (got " + std::to_string(m) + ")");
  const int64_t n = w.source.n;
  const int64_t k = w.source.k;
  std::lock_guard<std::mutex> lock(dev->host_mutex);
  if (Status s = cuda_status(cudaSetDevice(dev->device), "cudaSetDevice"); !s) return s;
  if (dev->stream == nullptr) {
    if (Status s = cuda_status(cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking), "cudaStreamCreate"); !s) return s;
    if (Status s = cuda_status(cudaMalloc(&dev->x_scratch, static_cast<size_t>(kMaxM * k) * sizeof(uint16_t)), "cudaMalloc(x)");
        !s) {
      return s;
    }
    if (Status s = cuda_status(cudaMalloc(&dev->y_scratch, static_cast<size_t>(kMaxM * n) * sizeof(float)), "cudaMalloc(y)");
        !s) {
      return s;
    }
  }
  // fp32 -> fp16 on the host (round to nearest even, as __float2half_rn does).
  std::vector<uint16_t> xh(static_cast<size_t>(m * k));
  for (size_t i = 0; i < xh.size(); ++i) xh[i] = fp32_to_fp16(x[i]);
  if (Status s = cuda_status(cudaMemcpyAsync(dev->x_scratch, xh.data(), xh.size() * sizeof(uint16_t),
                                             cudaMemcpyHostToDevice, dev->stream),
                             "cudaMemcpyAsync(x)");
      !s) {
    return s;
  }
  if (Status s = gemm_device(w, Activation::kF16, dev->x_scratch, m, dev->y_scratch, dev->stream); !s) return s;
  if (Status s = cuda_status(cudaMemcpyAsync(y, dev->y_scratch, static_cast<size_t>(m * n) * sizeof(float),
                                             cudaMemcpyDeviceToHost, dev->stream),
                             "cudaMemcpyAsync(y)");
      !s) {
    return s;
  }
  return cuda_status(cudaStreamSynchronize(dev->stream), "cuda gemm (kernel execution)");
}

// The table's void gemm: for callers that bypass BcqLinear. A CUDA failure here has no Status
// channel, so it is reported and aborts rather than leaving y silently unwritten.
void cuda_gemm(const PackedMatrix& w, const float* x, int64_t m, float* y, ThreadPool&) {
  if (Status s = cuda_gemm_status(w, x, m, y); !s) {
    std::fprintf(stderr, "lutq: cuda gemm failed: %s\n", s.message().c_str());
    std::abort();
  }
}

// K split: enough blocks for about two per multiprocessor, each split at least
// kMinWordsPerSplit words long.
int choose_ksplit(int64_t tiles, int64_t words, int sms) {
  const int64_t row_blocks = (tiles + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t want = (2 * static_cast<int64_t>(sms) + row_blocks - 1) / row_blocks;
  const int64_t most = std::max<int64_t>(1, words / kMinWordsPerSplit);
  return static_cast<int>(std::clamp<int64_t>(want, 1, std::min<int64_t>(most, 64)));
}

}  // namespace

const char* path_name(Path p) {
  switch (p) {
    case Path::kAuto: return "auto";
    case Path::kLut: return "lut";
    case Path::kMma: return "mma";
  }
  return "?";
}

const char* activation_name(Activation a) { return a == Activation::kF16 ? "fp16" : "bf16"; }

Path choose_path(int64_t m, int64_t n, int64_t k, int q) {
  (void)n;  // kept in the signature: the measured policy is expected to depend on it (small n: MMA)
  if (q > kLutMaxQ || k < 256) return Path::kMma;
  if (m == 1) return Path::kLut;
  if (m == 2 && q <= 2) return Path::kLut;
  return Path::kMma;
}

int64_t device_weight_bytes(const PackedMatrix& w) {
  const DeviceMatrix* dev = device_of(w);
  return dev == nullptr ? 0 : static_cast<int64_t>(dev->layout.bytes);
}

Status gemm_device(const PackedMatrix& w, Activation act, const void* x, int64_t m, float* y, void* stream,
                   const GemmOptions& opt) {
  const DeviceMatrix* dev = device_of(w);
  if (dev == nullptr) return Status::invalid("cuda gemm: the matrix was not placed on the device (use BcqLinear::create)");
  if (m < 1 || m > kMaxM) return Status::invalid("cuda gemm: m must be 1..32 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("cuda gemm: null activation or output pointer");
  const format::BcqMatrix& shape = dev->shape;
  const Layout& l = dev->layout;
  auto* s = static_cast<cudaStream_t>(stream);
  KernelArgs a;
  a.bits = reinterpret_cast<const uint32_t*>(dev->weights + l.bits_offset);
  a.alpha = reinterpret_cast<const uint16_t*>(dev->weights + l.alpha_offset);
  a.offset = shape.cfg.has_offset ? reinterpret_cast<const uint16_t*>(dev->weights + l.offset_offset) : nullptr;
  a.x = x;
  a.m = static_cast<int>(m);
  a.q = shape.cfg.q;
  a.n = shape.n;
  a.k = shape.k;
  a.g = shape.cfg.g;
  a.tiles = l.tiles;
  a.words = l.words;
  a.groups = l.groups;
  a.per_ic = shape.cfg.orientation == format::Orientation::kPerIC;
  a.has_offset = shape.cfg.has_offset;
  int ksplit = opt.ksplit > 0 ? opt.ksplit : choose_ksplit(l.tiles, l.words, dev->sms);
  ksplit = static_cast<int>(std::clamp<int64_t>(ksplit, 1, l.words));
  a.words_per_split = (l.words + ksplit - 1) / ksplit;
  ksplit = static_cast<int>((l.words + a.words_per_split - 1) / a.words_per_split);

  Path path = opt.path;
  if (path == Path::kAuto) {
    path = choose_path(m, shape.n, shape.k, a.q);
    // A LUT shape whose tables do not fit (per-IC with many row blocks, mu = 8) goes to MMA.
    if (path == Path::kLut && (m > kLutMaxM || lut_tile_words(a, opt.mu) < 1)) path = Path::kMma;
  }
  float* partial = nullptr;
  if (ksplit > 1) {
    const size_t bytes = static_cast<size_t>(ksplit) * static_cast<size_t>(m * shape.n) * sizeof(float);
    if (Status st = cuda_status(cudaMallocAsync(reinterpret_cast<void**>(&partial), bytes, s), "cudaMallocAsync(split-K)"); !st) {
      return st;
    }
  }
  a.out = ksplit > 1 ? partial : y;
  Status st = path == Path::kLut ? launch_lut(a, act, opt.mu, ksplit, s) : launch_mma(a, act, ksplit, s);
  if (st && ksplit > 1) st = launch_reduce(partial, y, m, shape.n, ksplit, s);
  if (partial != nullptr) {
    Status freed = cuda_status(cudaFreeAsync(partial, s), "cudaFreeAsync(split-K)");
    if (st) st = freed;
  }
  return st;
}

DeviceMatrix::~DeviceMatrix() {
  // Destructors cannot return a Status; a failure to free at shutdown is ignored on purpose.
  if (stream != nullptr) (void)cudaStreamDestroy(stream);
  (void)cudaFree(x_scratch);
  (void)cudaFree(y_scratch);
  (void)cudaFree(weights);
}

}  // namespace cuda

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  if (count == 0) return "no CUDA device";
  return "available";
}

const Backend& cuda_backend() {
  static const Backend kBackend{Isa::kCuda,        cuda::cuda_available, cuda::cuda_check, cuda::cuda_repack,
                                cuda::cuda_unpack, cuda::cuda_gemm,      nullptr,          cuda::cuda_place,
                                cuda::cuda_gemm_status};
  return kBackend;
}

}  // namespace lutq::kernels
