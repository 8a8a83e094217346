// The CUDA LUT-GEMM kernel (docs/kernels.md, "CUDA"): for each chunk of MU activations a table of
// all 2^MU signed sums is built in shared memory (fp32), and each lane — one weight row — reads
// its MU weight bits of a plane as the index into it. A block is kWarpsPerBlock row tiles sharing
// one K range; grid = (row-tile groups, K splits). Per-OC scales are applied once per group and
// plane; per-IC scales are folded into the activations before the tables are built.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_internal.h"

namespace lutq::kernels::cuda {
namespace {

__device__ __forceinline__ float to_float(const __half* x, int64_t i) { return __half2float(x[i]); }
__device__ __forceinline__ float to_float(const __nv_bfloat16* x, int64_t i) { return __bfloat162float(x[i]); }
__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Row blocks (per-IC groups of g rows) spanned by the tiles of one block: tables are per
// (row block, plane). Per-OC: one set of tables.
__host__ __device__ inline int64_t row_block(const KernelArgs& a, int64_t tile) {
  return a.per_ic ? (tile * kTileRows) / a.g : 0;
}

__host__ __device__ inline int max_row_blocks(const KernelArgs& a) {
  const int64_t rows = static_cast<int64_t>(kWarpsPerBlock) * kTileRows;  // rows of one block, aligned
  if (!a.per_ic || a.g >= a.n || a.g % rows == 0) return 1;
  if (rows % a.g == 0) return static_cast<int>(rows / a.g);
  return static_cast<int>(rows / a.g + 2);  // g not a power of two: a block may straddle boundaries
}

// Shared-memory bytes per activation word (32 activations) for the LUT kernel.
__host__ __device__ inline int64_t lut_bytes_per_word(const KernelArgs& a, int mu) {
  const int64_t nb = max_row_blocks(a);
  const int64_t sets = a.per_ic ? nb * a.q : 1;
  const int64_t tables = static_cast<int64_t>(kWordBits / mu) * (int64_t{1} << mu);
  return a.m * (sets * (tables + kWordBits) + nb) * static_cast<int64_t>(sizeof(float));
}

// The table entry of index p over activations v[0..MU): the sum of ±v_t, bit t of p choosing
// the sign, added in the order of kernels/lut_tables.cc (((s0 + s1) + s2) + s3); for MU = 8 the
// two halves are such sums, added last.
template <int MU>
__device__ __forceinline__ float table_entry(const float* v, unsigned p) {
  float lo = (p & 1u) ? v[0] : -v[0];
  lo += (p & 2u) ? v[1] : -v[1];
  lo += (p & 4u) ? v[2] : -v[2];
  lo += (p & 8u) ? v[3] : -v[3];
  if constexpr (MU == 4) {
    return lo;
  } else {
    float hi = (p & 16u) ? v[4] : -v[4];
    hi += (p & 32u) ? v[5] : -v[5];
    hi += (p & 64u) ? v[6] : -v[6];
    hi += (p & 128u) ? v[7] : -v[7];
    return lo + hi;
  }
}

template <int MU, int Q, typename Act>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) lut_kernel(KernelArgs a, int tile_words) {
  extern __shared__ float smem[];
  constexpr int kEntries = 1 << MU;
  constexpr int kChunks = kWordBits / MU;  // chunks per word
  const Act* x = static_cast<const Act*>(a.x);
  const int m = a.m;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t first_tile = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock;
  const int64_t last_tile = min(first_tile + kWarpsPerBlock, a.tiles) - 1;
  const int64_t tile = first_tile + warp;
  const bool tile_ok = tile < a.tiles;
  const int64_t rb0 = row_block(a, first_tile);
  const int nb = static_cast<int>(row_block(a, last_tile) - rb0 + 1);
  const int my_rb = tile_ok ? static_cast<int>(row_block(a, tile) - rb0) : 0;
  const int sets = a.per_ic ? nb * Q : 1;
  const int64_t w_begin = static_cast<int64_t>(blockIdx.y) * a.words_per_split;
  const int64_t w_end = min(a.words, w_begin + a.words_per_split);

  // Shared memory of one K tile: tables [m][set][chunk][entry], staged activations
  // [m][set][activation], and per word either Σx (per-OC offset) or Σ z·x (per-IC offset)
  // [m][row block][word].
  float* tables = smem;
  float* staged = tables + static_cast<int64_t>(m) * sets * tile_words * kChunks * kEntries;
  float* word_sums = staged + static_cast<int64_t>(m) * sets * tile_words * kWordBits;

  float acc[kLutMaxM] = {};  // the lane's output per activation row
  float part[kLutMaxM][Q] = {};  // per-OC: lookup sums of the current group, per plane
  float xsum[kLutMaxM] = {};  // per-OC: Σx of the current group (for the offset)
  int64_t group = -1;
  const uint32_t* my_bits = a.bits + (tile_ok ? tile : 0) * a.words * Q * kTileRows + lane;

  // Per-OC: adds the finished group's Σ_i α_i · part_i (+ z · Σx) to the outputs.
  auto flush = [&]() {
    if (group < 0 || !tile_ok) return;
    const int64_t base = (tile * a.groups + group) * Q;
    float alpha[Q];
#pragma unroll
    for (int i = 0; i < Q; ++i) alpha[i] = half_bits_to_float(a.alpha[(base + i) * kTileRows + lane]);
    const float z = a.has_offset ? half_bits_to_float(a.offset[(tile * a.groups + group) * kTileRows + lane]) : 0.0f;
#pragma unroll
    for (int mm = 0; mm < kLutMaxM; ++mm) {
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < Q; ++i) s += alpha[i] * part[mm][i];
      if (a.has_offset) s += z * xsum[mm];
      acc[mm] += s;
#pragma unroll
      for (int i = 0; i < Q; ++i) part[mm][i] = 0.0f;
      xsum[mm] = 0.0f;
    }
  };

  for (int64_t t0 = w_begin; t0 < w_end; t0 += tile_words) {
    const int tw = static_cast<int>(min(static_cast<int64_t>(tile_words), w_end - t0));
    // 1. Stage the activations of this K tile (per-IC: times α_i of each row block and plane).
    const int staged_count = m * sets * tw * kWordBits;
    for (int e = static_cast<int>(threadIdx.x); e < staged_count; e += blockDim.x) {
      const int c = e % (tw * kWordBits);
      const int set = (e / (tw * kWordBits)) % sets;
      const int mm = e / (tw * kWordBits * sets);
      const int64_t col = t0 * kWordBits + c;
      float v = to_float(x, mm * a.k + col);
      if (a.per_ic) v *= half_bits_to_float(a.alpha[((rb0 + set / Q) * a.k + col) * a.q + set % Q]);
      staged[(static_cast<int64_t>(mm) * sets + set) * tw * kWordBits + c] = v;
    }
    if (a.has_offset) {
      for (int e = static_cast<int>(threadIdx.x); e < m * nb * tw; e += blockDim.x) {
        const int wl = e % tw;
        const int rb = (e / tw) % nb;
        const int mm = e / (tw * nb);
        float s = 0.0f;
        for (int c = 0; c < kWordBits; ++c) {
          const int64_t col = (t0 + wl) * kWordBits + c;
          const float v = to_float(x, mm * a.k + col);
          s += a.per_ic ? half_bits_to_float(a.offset[(rb0 + rb) * a.k + col]) * v : v;
        }
        word_sums[(mm * nb + rb) * tw + wl] = s;
      }
    }
    __syncthreads();
    // 2. Build the tables: one entry per thread and step, consecutive threads on consecutive
    //    entries of one chunk (conflict-free stores).
    const int entries = m * sets * tw * kChunks * kEntries;
    for (int e = static_cast<int>(threadIdx.x); e < entries; e += blockDim.x) {
      const int chunk = e / kEntries;  // over [m][set][tw * kChunks]
      tables[e] = table_entry<MU>(staged + chunk * MU, static_cast<unsigned>(e % kEntries));
    }
    __syncthreads();
    // 3. Lookups: each lane walks the tile's words for its row; the q bit words of the next word
    //    are loaded before the current one is consumed.
    if (tile_ok) {
      uint32_t next[Q];
#pragma unroll
      for (int i = 0; i < Q; ++i) next[i] = __ldg(my_bits + (t0 * Q + i) * kTileRows);
      for (int wl = 0; wl < tw; ++wl) {
        uint32_t cur[Q];
#pragma unroll
        for (int i = 0; i < Q; ++i) cur[i] = next[i];
        if (wl + 1 < tw) {
#pragma unroll
          for (int i = 0; i < Q; ++i) next[i] = __ldg(my_bits + ((t0 + wl + 1) * Q + i) * kTileRows);
        }
        const int64_t word = t0 + wl;
        if (!a.per_ic) {
          const int64_t grp = word * kWordBits / a.g;
          if (grp != group) {
            flush();
            group = grp;
          }
        }
#pragma unroll
        for (int mm = 0; mm < kLutMaxM; ++mm) {
          if (mm >= m) break;
#pragma unroll
          for (int i = 0; i < Q; ++i) {
            const int set = a.per_ic ? my_rb * Q + i : 0;
            const float* tab = tables + ((static_cast<int64_t>(mm) * sets + set) * tw + wl) * kChunks * kEntries;
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < kChunks; ++j) s += tab[j * kEntries + ((cur[i] >> (j * MU)) & (kEntries - 1))];
            if (a.per_ic) {
              acc[mm] += s;
            } else {
              part[mm][i] += s;
            }
          }
          if (a.has_offset) {
            const float ws = word_sums[(mm * nb + (a.per_ic ? my_rb : 0)) * tw + wl];
            if (a.per_ic) {
              acc[mm] += ws;
            } else {
              xsum[mm] += ws;
            }
          }
        }
      }
    }
    __syncthreads();
  }
  if (!a.per_ic) flush();
  const int64_t row = tile * kTileRows + lane;
  if (tile_ok && row < a.n) {
#pragma unroll
    for (int mm = 0; mm < kLutMaxM; ++mm) {
      if (mm < m) a.out[(static_cast<int64_t>(blockIdx.y) * m + mm) * a.n + row] = acc[mm];
    }
  }
}

template <int MU, int Q, typename Act>
Status launch_typed(const KernelArgs& a, int tile_words, int ksplit, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(lut_bytes_per_word(a, MU) * tile_words);
  const dim3 grid(static_cast<unsigned>((a.tiles + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(ksplit));
  lut_kernel<MU, Q, Act><<<grid, kWarpsPerBlock * 32, smem, stream>>>(a, tile_words);
  return cuda_status(cudaGetLastError(), "LUT kernel launch");
}

template <int MU, typename Act>
Status launch_q(const KernelArgs& a, int tile_words, int ksplit, cudaStream_t stream) {
  switch (a.q) {
    case 1: return launch_typed<MU, 1, Act>(a, tile_words, ksplit, stream);
    case 2: return launch_typed<MU, 2, Act>(a, tile_words, ksplit, stream);
    case 3: return launch_typed<MU, 3, Act>(a, tile_words, ksplit, stream);
    case 4: return launch_typed<MU, 4, Act>(a, tile_words, ksplit, stream);
    default: return Status::invalid("LUT kernel: q must be 1..4 (got " + std::to_string(a.q) + "); use the MMA path");
  }
}

}  // namespace

int lut_tile_words(const KernelArgs& a, int mu) {
  const int64_t per_word = lut_bytes_per_word(a, mu);
  return static_cast<int>(std::min<int64_t>(a.words_per_split, kLutSmemBudget / per_word));
}

Status launch_lut(const KernelArgs& a, Activation act, int mu, int ksplit, cudaStream_t stream) {
  if (a.m < 1 || a.m > kLutMaxM) return Status::invalid("LUT kernel: m must be 1..4 (got " + std::to_string(a.m) + ")");
  if (mu != 4 && mu != 8) return Status::invalid("LUT kernel: mu must be 4 or 8 (got " + std::to_string(mu) + ")");
  const int tile_words = lut_tile_words(a, mu);
  if (tile_words < 1) return Status::unsupported("LUT kernel: the tables of one word do not fit in shared memory");
  if (act == Activation::kF16) {
    return mu == 4 ? launch_q<4, __half>(a, tile_words, ksplit, stream) : launch_q<8, __half>(a, tile_words, ksplit, stream);
  }
  return mu == 4 ? launch_q<4, __nv_bfloat16>(a, tile_words, ksplit, stream)
                 : launch_q<8, __nv_bfloat16>(a, tile_words, ksplit, stream);
}

}  // namespace lutq::kernels::cuda
