// The per-IC (AdaDim) gemm of the AVX2 backend. For row block b, plane i and activation row mm:
// x'[c] = fp32(α_i[b, c])·x[c] (one rounding, as the reference), its tables per kb block, lookups
// with α = 1, and y = ((0 + s_0) + s_1 ...) + Σ_c z[b, c]·x[c]. The per-plane sums s_i follow the
// reference's order; only the offset dot is summed in another order.
#include <algorithm>
#include <cstdint>
#include <utility>

#include <immintrin.h>

#include "core/thread_pool.h"
#include "kernels/avx2/avx2_internal.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx2/avx2_scratch.h"
#include "kernels/lut_tables.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace lutq::kernels::avx2 {
namespace {

constexpr size_t kIcTableBudget = size_t{4} << 20;  // per-IC table bytes built at once

struct IcTables {
  int8_t* tq = nullptr;     // fast: [kblock][q][mc][kb/4][16]
  float* scales = nullptr;  // fast: [kblock][q][mc]
  float* tf = nullptr;      // exact: [kblock][q][mc][kb/4][8] (entries 0..7)
  float* zdot = nullptr;    // [mc]
  int64_t mc = 0;           // activation rows these tables hold

  static size_t carve(const Layout& L, bool fast, int64_t mc, uint8_t* base, IcTables* out) {
    Carver c(base);
    const int64_t chunks = L.k / kMu * L.q * mc;
    IcTables t;
    t.mc = mc;
    t.tq = fast ? c.take<int8_t>(static_cast<size_t>(chunks * kTableSize)) : nullptr;
    t.scales = fast ? c.take<float>(static_cast<size_t>(L.units * L.q * mc)) : nullptr;
    t.tf = fast ? nullptr : c.take<float>(static_cast<size_t>(chunks * kHalfTable));
    t.zdot = c.take<float>(static_cast<size_t>(mc));
    if (out != nullptr) *out = t;
    return c.used();
  }
};

// Rows of the m chunk that one table set covers.
int64_t ic_rows(const Layout& L, bool fast, int64_t m) {
  const size_t per_row = IcTables::carve(L, fast, 1, nullptr, nullptr);
  return std::clamp<int64_t>(static_cast<int64_t>(kIcTableBudget / per_row), 1, m);
}

// Builds items [e0, e1) of block b's tables for rows m0.. (item e = (kblock*q + i)*mc + mm),
// and, for rows [z0, z1) of the chunk, the offset dots.
void build_ic(const Layout& L, bool fast, const uint8_t* data, const float* x, int64_t b, int64_t m0,
              const IcTables& t, int64_t e0, int64_t e1, int64_t z0, int64_t z1) {
  alignas(64) float xs[256];
  alignas(64) float scratch[256 * 4];
  const auto* alpha = reinterpret_cast<const uint16_t*>(data + L.alpha_at) + b * L.q * L.k;
  const uint8_t* codes = data + L.alpha_at + b * L.q * L.k;  // coded: one byte per scale
  const auto* steps = reinterpret_cast<const float*>(data + L.steps_at);
  const int64_t entries = L.kb / kMu * (fast ? kTableSize : kHalfTable);
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t mm = e % t.mc;
    const int64_t i = e / t.mc % L.q;
    const int64_t kk = e / t.mc / L.q;
    const int64_t c0 = kk * L.kb;
    if (L.coded) {
      scale_by_codes(codes + i * L.k + c0, steps + i * L.k + c0, x + (m0 + mm) * L.k + c0, L.kb, xs);
    } else {
      scale_by_f16(alpha + i * L.k + c0, x + (m0 + mm) * L.k + c0, L.kb, xs);
    }
    if (fast) {
      t.scales[e] = tables_i8(xs, L.kb, t.tq + e * entries, scratch);
    } else {
      tables_f32_half(xs, L.kb / kMu, t.tf + e * entries);
    }
  }
  for (int64_t mm = z0; mm < z1; ++mm) {
    t.zdot[mm] = L.has_offset ? dot_f16(reinterpret_cast<const uint16_t*>(data + L.offset_at) + b * L.k,
                                        x + (m0 + mm) * L.k, L.k)
                              : 0.0f;
  }
}

// s[(i*mc + mm)*32 + row] += the lookups of plane i in unit kk, rows mm in [mm0, mm0 + MB).
template <int MB, int NJ, bool kFast>
void unit_ic(const Layout& L, const IcTables& t, const uint8_t* wp, int64_t kk, int i, int64_t mm0, float* s) {
  const int64_t tstride = L.kb / kMu * (kFast ? kTableSize : kHalfTable);
  const int64_t e = (kk * L.q + i) * t.mc + mm0;
  float* sp = s + (i * t.mc + mm0) * kTileRows;
  if constexpr (kFast) {
    __m256i lo[MB], hi[MB];
    lookup_block<MB, 1, NJ>(wp, 0, t.tq + e * tstride, tstride, lo, hi);
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      __m256i d[4];
      widen_i32(lo[mm], hi[mm], d);
      const __m256 sc = _mm256_set1_ps(t.scales[e + mm]);
#pragma GCC unroll 4
      for (int x = 0; x < 4; ++x) {
        float* p = sp + mm * kTileRows + 8 * x;
        _mm256_store_ps(p, _mm256_add_ps(_mm256_load_ps(p), _mm256_mul_ps(sc, _mm256_cvtepi32_ps(d[x]))));
      }
    }
  } else {
    __m256 acc[MB * 4];
#pragma GCC unroll 16
    for (int x = 0; x < MB * 4; ++x) acc[x] = _mm256_load_ps(sp + 8 * x);
    lookup_f32<MB>(wp, L.kb / 8, t.tf + e * tstride, tstride, acc);
#pragma GCC unroll 16
    for (int x = 0; x < MB * 4; ++x) _mm256_store_ps(sp + 8 * x, acc[x]);
  }
}

template <bool kFast, int NJ>
void tile_ic(const Layout& L, const IcTables& t, int64_t tile, const uint8_t* data, float* y) {
  constexpr int kRows = kFast ? kFastRows : kExactRows;
  const uint8_t* tp = data + tile * L.tile_bytes;
  alignas(64) float s[format::kMaxBits * kMaxM * kTileRows];
  std::fill(s, s + L.q * t.mc * kTileRows, 0.0f);
  for (int64_t kk = 0; kk < L.units; ++kk) {
    const uint8_t* up = tp + kk * L.unit_bytes;
    for (int i = 0; i < L.q; ++i) {
      const uint8_t* wp = up + i * L.plane_bytes;
      int64_t mm = 0;
      for (; mm + kRows <= t.mc; mm += kRows) unit_ic<kRows, NJ, kFast>(L, t, wp, kk, i, mm, s);
      switch (t.mc - mm) {
        case 3: unit_ic<3, NJ, kFast>(L, t, wp, kk, i, mm, s); break;
        case 2: unit_ic<2, NJ, kFast>(L, t, wp, kk, i, mm, s); break;
        case 1: unit_ic<1, NJ, kFast>(L, t, wp, kk, i, mm, s); break;
        default: break;
      }
    }
  }
  // y = ((0 + s_0) + s_1 ...) + zdot, as the reference.
  alignas(64) float acc[kMaxM * kTileRows];
  for (int64_t mm = 0; mm < t.mc; ++mm) {
    const __m256 zd = _mm256_set1_ps(t.zdot[mm]);
    for (int x = 0; x < 4; ++x) {
      __m256 a = _mm256_setzero_ps();
      for (int i = 0; i < L.q; ++i) a = _mm256_add_ps(a, _mm256_load_ps(s + (i * t.mc + mm) * kTileRows + 8 * x));
      _mm256_store_ps(acc + mm * kTileRows + 8 * x, _mm256_add_ps(a, zd));
    }
  }
  store_tile(acc, t.mc, L.n, tile * kTileRows, y);
}

// Tiles [t0, t1) that hold rows of block b.
std::pair<int64_t, int64_t> block_tiles(const Layout& L, int64_t b) {
  return {b * L.g / kTileRows, std::min(L.tiles, ((b + 1) * L.g + kTileRows - 1) / kTileRows)};
}

}  // namespace

void gemm_ic(const Layout& L, bool fast, const uint8_t* data, const float* x, int64_t m, float* y,
             ThreadPool& pool) {
  const int64_t mc_max = ic_rows(L, fast, m);
  const int nth = pool.size();
  auto run_tiles = [&](const IcTables& t, int64_t m0, int64_t t0, int64_t t1) {
    with_block_vecs(L.kb / 8, [&](auto nj) {
      for (int64_t tile = t0; tile < t1; ++tile) {
        if (fast) {
          tile_ic<true, decltype(nj)::value>(L, t, tile, data, y + m0 * L.n);
        } else {
          tile_ic<false, decltype(nj)::value>(L, t, tile, data, y + m0 * L.n);
        }
      }
    });
  };
  if (L.blocks >= 2 * nth || nth == 1) {
    // Whole blocks per thread, each with its own tables.
    WorkQueue queue(0, L.blocks, nth);
    pool.run([&](int, int) {
      Scratch buf(IcTables::carve(L, fast, mc_max, nullptr, nullptr));
      for (int64_t b0, b1; queue.take(b0, b1);) {
        for (int64_t b = b0; b < b1; ++b) {
          for (int64_t m0 = 0; m0 < m; m0 += mc_max) {
            IcTables t;
            IcTables::carve(L, fast, std::min(mc_max, m - m0), buf.data(), &t);
            build_ic(L, fast, data, x, b, m0, t, 0, L.units * L.q * t.mc, 0, t.mc);
            const auto [t0, t1] = block_tiles(L, b);
            run_tiles(t, m0, t0, t1);
          }
        }
      }
    });
    return;
  }
  // Few blocks: all threads build one block's tables, then share its tiles.
  Scratch buf(IcTables::carve(L, fast, mc_max, nullptr, nullptr));
  for (int64_t b = 0; b < L.blocks; ++b) {
    for (int64_t m0 = 0; m0 < m; m0 += mc_max) {
      IcTables t;
      IcTables::carve(L, fast, std::min(mc_max, m - m0), buf.data(), &t);
      pool.run([&](int th, int count) {
        const auto [e0, e1] = split_range(L.units * L.q * t.mc, 1, th, count);
        const auto [z0, z1] = split_range(t.mc, 1, th, count);
        build_ic(L, fast, data, x, b, m0, t, e0, e1, z0, z1);
      });
      const auto [bt0, bt1] = block_tiles(L, b);
      WorkQueue queue(bt0, bt1, nth);
      pool.run([&](int, int) {
        for (int64_t t0, t1; queue.take(t0, t1);) run_tiles(t, m0, t0, t1);
      });
    }
  }
}

// int8 partial sums (test hook): the same table builds and lookup_block as the fast gemm, m = 1.
void partials_ic(const Layout& L, const uint8_t* data, const float* x, int32_t* out) {
  Scratch buf(IcTables::carve(L, true, 1, nullptr, nullptr));
  IcTables t;
  IcTables::carve(L, true, 1, buf.data(), &t);
  with_block_vecs(L.kb / 8, [&](auto nj) {
    constexpr int kNj = decltype(nj)::value;
    for (int64_t b = 0; b < L.blocks; ++b) {
      build_ic(L, true, data, x, b, 0, t, 0, L.units * L.q, 0, 1);
      const auto [t0, t1] = block_tiles(L, b);
      for (int64_t tile = t0; tile < t1; ++tile) {
        for (int64_t kk = 0; kk < L.units; ++kk) {
          const uint8_t* up = data + tile * L.tile_bytes + kk * L.unit_bytes;
          for (int i = 0; i < L.q; ++i) {
            __m256i lo, hi;
            lookup_block<1, 1, kNj>(up + i * L.plane_bytes, 0, t.tq + (kk * L.q + i) * 32 * kNj, 0, &lo, &hi);
            store_partials(L, lo, hi, tile * kTileRows, i, kk, out);
          }
        }
      }
    }
  });
}

}  // namespace lutq::kernels::avx2

#pragma GCC pop_options
