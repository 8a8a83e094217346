// The CUDA dequantize-to-registers tensor-core kernel (docs/kernels.md, "CUDA"), Marlin-style:
// each warp owns one 32-row tile of W (two m16 MMA tiles; lane = (group id, thread in group) as
// in the mma.sync fragment layout), rebuilds the fp16/bf16 weights its A fragments need straight
// from the bit words and scales in registers (w = (z − Σα) + Σ_i bit_i·2α_i, in fp32, rounded once),
// and multiplies them with activation fragments loaded from global memory (L1-resident) using
// mma.sync.m16n8k16 with fp32 accumulators. NT n8 tiles cover m <= 8·NT activation rows. Any q.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_internal.h"

namespace lutq::kernels::cuda {
namespace {

constexpr int kMaxQ = format::kMaxBits;

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Two weights as the 32-bit register of an A fragment (low half = lower column).
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __half*) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __nv_bfloat16*) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                          const __half*) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                          const __nv_bfloat16*) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Dequantization parameters of one scale set: w = base + Σ_i bit_i · two_alpha[i].
struct Scales {
  float base;
  float two_alpha[kMaxQ];
};

__device__ __forceinline__ Scales load_scales(const uint16_t* alpha, const uint16_t* offset, int q, int64_t stride) {
  Scales s;
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxQ; ++i) {
    const float al = i < q ? half_bits_to_float(alpha[i * stride]) : 0.0f;
    s.two_alpha[i] = 2.0f * al;  // exact: fp16 values times two
    sum += al;
  }
  s.base = (offset != nullptr ? half_bits_to_float(*offset) : 0.0f) - sum;
  return s;
}

__device__ __forceinline__ float dequant(const Scales& s, const uint32_t (&bits)[kMaxQ], int q, int col) {
  float v = s.base;
#pragma unroll
  for (int i = 0; i < kMaxQ; ++i) {
    if (i < q && ((bits[i] >> col) & 1u)) v += s.two_alpha[i];
  }
  return v;
}

template <int NT, typename Act>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) mma_kernel(KernelArgs a) {
  const Act* x = static_cast<const Act*>(a.x);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int gid = lane / 4;  // row within an 8-row slice of the fragment
  const int tig = lane % 4;  // thread in group: column pair
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (tile >= a.tiles) return;  // no shared memory, no barriers: idle warps may leave
  const int q = a.q;
  const int64_t w_begin = static_cast<int64_t>(blockIdx.y) * a.words_per_split;
  const int64_t w_end = min(a.words, w_begin + a.words_per_split);
  // The lane's four rows in the tile: j = 2·mt + h is row 16·mt + 8·h + gid.
  int rows[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) rows[j] = (j / 2) * 16 + (j % 2) * 8 + gid;
  const int64_t rb = a.per_ic ? (tile * kTileRows) / a.g : 0;

  float acc[2][NT][4] = {};
  Scales row_scales[4];
  int64_t group = -1;

  for (int64_t w = w_begin; w < w_end; ++w) {
    uint32_t bits[4][kMaxQ];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < kMaxQ; ++i) {
        bits[j][i] = i < q ? __ldg(a.bits + ((tile * a.words + w) * q + i) * kTileRows + rows[j]) : 0u;
      }
    }
    if (!a.per_ic) {
      const int64_t grp = w * kWordBits / a.g;
      if (grp != group) {
        group = grp;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t set = tile * a.groups + grp;
          row_scales[j] = load_scales(a.alpha + set * q * kTileRows + rows[j], a.has_offset ? a.offset + set * kTileRows + rows[j] : nullptr,
                                      q, kTileRows);
        }
      }
    }
#pragma unroll
    for (int s = 0; s < 2; ++s) {  // two k16 steps per word
      const int c0 = s * 16 + tig * 2;  // the lane's columns: c0, c0+1, c0+8, c0+9
      Scales col_scales[4];
      if (a.per_ic) {
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) {
          const int64_t col = w * kWordBits + c0 + (cc / 2) * 8 + cc % 2;
          col_scales[cc] = load_scales(a.alpha + (rb * a.k + col) * q, a.has_offset ? a.offset + rb * a.k + col : nullptr, q, 1);
        }
      }
      // B fragments: x[row nt·8 + gid][c0, c0+1] and [c0+8, c0+9]; rows past m are zero.
      uint32_t b[NT][2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int mrow = nt * 8 + gid;
        const int64_t col = w * kWordBits + c0;
        if (mrow < a.m) {
          b[nt][0] = __ldg(reinterpret_cast<const unsigned int*>(x + mrow * a.k + col));
          b[nt][1] = __ldg(reinterpret_cast<const unsigned int*>(x + mrow * a.k + col + 8));
        } else {
          b[nt][0] = 0u;
          b[nt][1] = 0u;
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        uint32_t frag[4];
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
          const int j = mt * 2 + reg % 2;  // regs 0, 2: row gid; regs 1, 3: row gid + 8
          const int col = c0 + (reg / 2) * 8;
          float v0, v1;
          if (a.per_ic) {
            v0 = dequant(col_scales[(reg / 2) * 2], bits[j], q, col);
            v1 = dequant(col_scales[(reg / 2) * 2 + 1], bits[j], q, col + 1);
          } else {
            v0 = dequant(row_scales[j], bits[j], q, col);
            v1 = dequant(row_scales[j], bits[j], q, col + 1);
          }
          frag[reg] = pack2(v0, v1, x);
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_16816(acc[mt][nt], frag, b[nt][0], b[nt][1], x);
      }
    }
  }
  // D fragment: d0, d1 at (row gid, columns 2·tig, 2·tig+1), d2, d3 at row gid + 8.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = tile * kTileRows + mt * 16 + (e / 2) * 8 + gid;
        const int mrow = nt * 8 + tig * 2 + e % 2;
        if (row < a.n && mrow < a.m) a.out[(static_cast<int64_t>(blockIdx.y) * a.m + mrow) * a.n + row] = acc[mt][nt][e];
      }
    }
  }
}

template <int NT, typename Act>
Status launch_typed(const KernelArgs& a, int ksplit, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.tiles + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(ksplit));
  mma_kernel<NT, Act><<<grid, kWarpsPerBlock * 32, 0, stream>>>(a);
  return cuda_status(cudaGetLastError(), "MMA kernel launch");
}

template <typename Act>
Status launch_act(const KernelArgs& a, int ksplit, cudaStream_t stream) {
  if (a.m <= 8) return launch_typed<1, Act>(a, ksplit, stream);
  if (a.m <= 16) return launch_typed<2, Act>(a, ksplit, stream);
  return launch_typed<4, Act>(a, ksplit, stream);
}

__global__ void reduce_kernel(const float* partial, float* y, int64_t count, int ksplit) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float s = 0.0f;
  for (int sp = 0; sp < ksplit; ++sp) s += partial[sp * count + i];
  y[i] = s;
}

}  // namespace

Status launch_mma(const KernelArgs& a, Activation act, int ksplit, cudaStream_t stream) {
  if (a.m < 1 || a.m > kMaxM) return Status::invalid("MMA kernel: m must be 1..32 (got " + std::to_string(a.m) + ")");
  return act == Activation::kF16 ? launch_act<__half>(a, ksplit, stream) : launch_act<__nv_bfloat16>(a, ksplit, stream);
}

Status launch_reduce(const float* partial, float* y, int64_t m, int64_t n, int ksplit, cudaStream_t stream) {
  const int64_t count = m * n;
  const int threads = 256;
  reduce_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(partial, y, count, ksplit);
  return cuda_status(cudaGetLastError(), "split-K reduction launch");
}

}  // namespace lutq::kernels::cuda
