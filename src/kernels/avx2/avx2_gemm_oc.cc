// The per-OC gemm of the AVX2 backend: tables of every activation row are built once (first
// pool.run), then threads take 32-row tiles from a queue and stream them unit (group) by unit.
//
// Float order: both paths repeat the scalar reference's operations in its order (per plane:
// s = Σ chunks (exact) or Σ blocks scale·isum (fast), left to right; acc_g = Σ_i α_i·s_i
// (+ z·Σx); y = Σ_groups acc_g; uniform scales, fast: acc_g = α_0·Σ blocks scale·Σ_i 2^i·isum_i),
// so they agree with it bit for bit.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

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

struct OcTables {
  const int8_t* tq = nullptr;     // fast: [block][m][kb/4][16]
  const float* scales = nullptr;  // fast: [block][m]
  const float* tf = nullptr;      // exact: [group][m][g/4][8] (entries 0..7)
  const float* xsum = nullptr;    // [group][m] when has_offset
  int64_t m = 0;
  int64_t blocks_per_unit = 0;    // g / kb
  // The fast path's plane chunks, per chunk limit c = 1..3: chunks[c] chunks of sizes
  // chunk_size[c][..] (at most c, as even as possible: q = 4, c = 3 gives 2 + 2).
  int chunks[4] = {};
  int chunk_size[4][format::kMaxBits] = {};

  void plan_chunks(int q) {
    for (int c = 1; c <= 3; ++c) {
      chunks[c] = (q + c - 1) / c;
      for (int i = 0, done = 0; i < chunks[c]; ++i) {
        chunk_size[c][i] = (q - done + chunks[c] - i - 1) / (chunks[c] - i);
        done += chunk_size[c][i];
      }
    }
  }
};

// accg (+)= α_i·s for one plane (rows 8x..8x+7 in s[4*mm + x]). The reference starts from
// acc_g = 0; taking the first product as is can differ from 0 + p only in the sign of a zero,
// which the final acc + accg (acc starts at +0) removes again.
template <int MB>
inline void add_plane(const Layout& L, const uint8_t* up, int64_t u, int i, bool first, const __m256* s,
                      __m256* accg) {
  __m256 al[4];
  load_alpha32(L, up, u, i, al);
#pragma GCC unroll 16
  for (int e = 0; e < MB * 4; ++e) {
    const __m256 p = _mm256_mul_ps(al[e % 4], s[e]);
    accg[e] = first ? p : _mm256_add_ps(accg[e], p);
  }
}

// accg += z·xsum (with offsets); acc += accg: the end of a unit, in the reference's order.
template <int MB>
inline void finish_unit_oc(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0,
                           __m256* accg, float* acc) {
  if (L.has_offset) {
    __m256 z[4];
    load_f16x32(up + L.offset_in_unit(), z);
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const __m256 xs = _mm256_set1_ps(t.xsum[u * t.m + m0 + mm]);
#pragma GCC unroll 4
      for (int x = 0; x < 4; ++x) accg[4 * mm + x] = _mm256_add_ps(accg[4 * mm + x], _mm256_mul_ps(z[x], xs));
    }
  }
#pragma GCC unroll 16
  for (int e = 0; e < MB * 4; ++e) {
    float* p = acc + (m0 + e / 4) * kTileRows + 8 * (e % 4);
    _mm256_store_ps(p, _mm256_add_ps(_mm256_load_ps(p), accg[e]));
  }
}

// Fast path, planes i0 .. i0+QB of unit (group) u, activation rows m0 .. m0+MB:
// per plane s = Σ_blocks scale_b·float(isum_b) (the first term as is: it is never −0), then
// accg (+)= α_i·s in plane order; kFirst: these planes start at plane 0, so accg starts here.
// Not inlined: as its own function GCC keeps the block's accumulators in registers (measured).
template <int MB, int QB, int NJ, bool kFirst>
[[gnu::noinline]] void planes_oc_fast(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u,
                                     int64_t m0, int i0, __m256* accg) {
  constexpr int64_t kStride = 32 * NJ;  // bytes of one block's row vectors, and of its int8 tables
  const int64_t bpu = t.blocks_per_unit;
  __m256 s[QB][MB * 4];
  int64_t bb = 0;
  do {  // a unit holds at least one block
    const int64_t blk = u * bpu + bb;
    __m256i lo[QB * MB], hi[QB * MB];
    lookup_block<MB, QB, NJ>(up + i0 * L.plane_bytes + bb * kStride, L.plane_bytes,
                             t.tq + (blk * t.m + m0) * kStride, kStride, lo, hi);
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const __m256 sc = _mm256_set1_ps(t.scales[blk * t.m + m0 + mm]);
#pragma GCC unroll 4
      for (int qi = 0; qi < QB; ++qi) {
        __m256i d[4];
        widen_i32(lo[qi * MB + mm], hi[qi * MB + mm], d);
#pragma GCC unroll 4
        for (int x = 0; x < 4; ++x) {
          const __m256 p = _mm256_mul_ps(sc, _mm256_cvtepi32_ps(d[x]));
          s[qi][4 * mm + x] = bb == 0 ? p : _mm256_add_ps(s[qi][4 * mm + x], p);
        }
      }
    }
  } while (++bb < bpu);
#pragma GCC unroll 4
  for (int qi = 0; qi < QB; ++qi) add_plane<MB>(L, up, u, i0 + qi, kFirst && qi == 0, s[qi], accg);
}

// planes_oc_fast for `count` (1 .. kMax) planes from i0.
template <int MB, int NJ, bool kFirst, int kMax>
void planes_oc_fast_n(int count, const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0,
                      int i0, __m256* accg) {
  if constexpr (kMax >= 3) {
    if (count == 3) return planes_oc_fast<MB, 3, NJ, kFirst>(L, t, up, u, m0, i0, accg);
  }
  if constexpr (kMax >= 2) {
    if (count == 2) return planes_oc_fast<MB, 2, NJ, kFirst>(L, t, up, u, m0, i0, accg);
  }
  planes_oc_fast<MB, 1, NJ, kFirst>(L, t, up, u, m0, i0, accg);
}

// Fast path: unit (group) u of one tile, activation rows m0 .. m0+MB, into acc[(m0+mm)*32 + row].
// Planes go in chunks of up to 3 (m = 1), as even as possible (t.chunk_size), so one table load
// serves several planes. Both choices were measured: 4 planes at MB = 1 spill registers, and
// 3 + 1 streams from DRAM ~9% slower than 2 + 2.
template <int MB, int NJ>
void unit_oc_fast(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0, float* acc) {
  constexpr int kQb = MB == 1 ? 3 : (MB == 2 ? 2 : 1);
  static_assert(kQb <= 3, "planes_oc_fast_n takes chunks of at most 3 planes");
  const int* size = t.chunk_size[kQb];
  __m256 accg[MB * 4];
  // The first chunk (q >= 1) starts accg, the others add to it, in plane order.
  planes_oc_fast_n<MB, NJ, true, kQb>(size[0], L, t, up, u, m0, 0, accg);
  for (int c = 1, i0 = size[0]; c < t.chunks[kQb]; i0 += size[c], ++c) {
    planes_oc_fast_n<MB, NJ, false, kQb>(size[c], L, t, up, u, m0, i0, accg);
  }
  finish_unit_oc<MB>(L, t, up, u, m0, accg, acc);
}

// The folded int32 sums of planes i0 .. i0+QC of one block (QC planes per int16 fold, at most
// fold_vecs<QC> row vectors): d = 2^i0·Σ_{i<QC} 2^i·isum_{i0+i}, or d += it.
template <int MB, int QC, int NJ>
inline void fold_planes(const Layout& L, const uint8_t* bp, const int8_t* tab, int i0, bool first,
                        __m256i* d) {
  __m256i lo[MB], hi[MB];
  lookup_fold<MB, QC, NJ>(bp + i0 * L.plane_bytes, L.plane_bytes, tab, 32 * NJ, lo, hi);
#pragma GCC unroll 4
  for (int mm = 0; mm < MB; ++mm) {
    __m256i w[4];
    widen_i32(lo[mm], hi[mm], w, 1 << i0);
#pragma GCC unroll 4
    for (int x = 0; x < 4; ++x) d[4 * mm + x] = first ? w[x] : _mm256_add_epi32(d[4 * mm + x], w[x]);
  }
}

// Fast path, uniform scales (Layout::uniform), unit (group) u, activation rows m0 .. m0+MB: per
// block D = Σ_i 2^i·isum_i as an exact integer, s = Σ_blocks scale_b·float(D) (the first term as
// is), then accg = α_0·s: the scalar reference's sum_folded in its order. All q planes fold into
// one int16 sum where the block allows it (fold_vecs), else pairs of planes do (no block is
// too long for a pair), widened and added in int32. Splitting a block along k instead (int16
// folds of all planes over part of it, then the next part) was measured 2.2x slower at q4 g128
// from DRAM (0.85 ms against 0.38 for 1536x8960 on one thread) though as fast from cache.
template <int MB, int Q, int NJ>
[[gnu::noinline]] void unit_oc_fold(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0,
                                    float* acc) {
  constexpr int64_t kStride = 32 * NJ;
  __m256 s[MB * 4];
  int64_t bb = 0;
  do {  // a unit holds at least one block
    const int64_t blk = u * t.blocks_per_unit + bb;
    const uint8_t* bp = up + bb * kStride;
    const int8_t* tab = t.tq + (blk * t.m + m0) * kStride;
    __m256i d[MB * 4];
    if constexpr (NJ <= fold_vecs<Q>()) {
      fold_planes<MB, Q, NJ>(L, bp, tab, 0, true, d);
    } else {
      fold_planes<MB, 2, NJ>(L, bp, tab, 0, true, d);
      if constexpr (Q == 3) fold_planes<MB, 1, NJ>(L, bp, tab, 2, false, d);
      if constexpr (Q == 4) fold_planes<MB, 2, NJ>(L, bp, tab, 2, false, d);
    }
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const __m256 sc = _mm256_set1_ps(t.scales[blk * t.m + m0 + mm]);
#pragma GCC unroll 4
      for (int x = 0; x < 4; ++x) {
        const __m256 p = _mm256_mul_ps(sc, _mm256_cvtepi32_ps(d[4 * mm + x]));
        s[4 * mm + x] = bb == 0 ? p : _mm256_add_ps(s[4 * mm + x], p);
      }
    }
  } while (++bb < t.blocks_per_unit);
  __m256 accg[MB * 4];
  add_plane<MB>(L, up, u, 0, true, s, accg);  // α_0·s
  finish_unit_oc<MB>(L, t, up, u, m0, accg, acc);
}

// One tile, all units, all activation rows: four at a time, then one at a time.
template <int Q, int NJ>
void tile_oc_fold(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  for (int64_t u = 0; u < L.units; ++u) {
    const uint8_t* up = L.unit_at(tp, u);
    int64_t m0 = 0;
    for (; m0 + kFastRows <= t.m; m0 += kFastRows) unit_oc_fold<kFastRows, Q, NJ>(L, t, up, u, m0, acc);
    for (; m0 < t.m; ++m0) unit_oc_fold<1, Q, NJ>(L, t, up, u, m0, acc);
  }
}

template <int NJ>
void tile_oc_fold_q(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  switch (L.q) {
    case 2: return tile_oc_fold<2, NJ>(L, t, tp, acc);
    case 3: return tile_oc_fold<3, NJ>(L, t, tp, acc);
    default: return tile_oc_fold<4, NJ>(L, t, tp, acc);  // lut_uniform: q in 2..4
  }
}

// Exact path: per plane, s = Σ chunks of the fp32 entries (from 0, in chunk order).
template <int MB>
void unit_oc_exact(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0, float* acc) {
  const int64_t tstride = L.unit / kMu * kHalfTable;
  __m256 accg[MB * 4];
  int i = 0;
  do {  // q >= 1: plane 0 starts accg
    __m256 s[MB * 4];
    for (auto& v : s) v = _mm256_setzero_ps();
    lookup_f32<MB>(up + i * L.plane_bytes, L.unit / 8, t.tf + (u * t.m + m0) * tstride, tstride, s);
    add_plane<MB>(L, up, u, i, i == 0, s, accg);
  } while (++i < L.q);
  finish_unit_oc<MB>(L, t, up, u, m0, accg, acc);
}

// One tile, all units, all activation rows (MB at a time).
template <int NJ>
void tile_oc_fast(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  for (int64_t u = 0; u < L.units; ++u) {
    const uint8_t* up = L.unit_at(tp, u);
    int64_t m0 = 0;
    for (; m0 + kFastRows <= t.m; m0 += kFastRows) unit_oc_fast<kFastRows, NJ>(L, t, up, u, m0, acc);
    switch (t.m - m0) {
      case 3: unit_oc_fast<3, NJ>(L, t, up, u, m0, acc); break;
      case 2: unit_oc_fast<2, NJ>(L, t, up, u, m0, acc); break;
      case 1: unit_oc_fast<1, NJ>(L, t, up, u, m0, acc); break;
      default: break;
    }
  }
}

void tile_oc_exact(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  for (int64_t u = 0; u < L.units; ++u) {
    const uint8_t* up = L.unit_at(tp, u);
    int64_t m0 = 0;
    for (; m0 + kExactRows <= t.m; m0 += kExactRows) unit_oc_exact<kExactRows>(L, t, up, u, m0, acc);
    switch (t.m - m0) {
      case 2: unit_oc_exact<2>(L, t, up, u, m0, acc); break;
      case 1: unit_oc_exact<1>(L, t, up, u, m0, acc); break;
      default: break;
    }
  }
}

// Tables of [e0, e1) of the (table unit, row) items e = unit*m + row, and the group sums of
// items [s0, s1).
void build_oc(const Layout& L, bool fast, const float* x, int64_t m, int64_t e0, int64_t e1, int64_t s0,
              int64_t s1, int8_t* tq, float* scales, float* tf, float* xsum) {
  alignas(64) float scratch[256 * 4];
  const int64_t tu = fast ? L.kb : L.unit;
  for (int64_t e = e0; e < e1; ++e) {
    const float* xp = x + (e % m) * L.k + (e / m) * tu;
    if (fast) {
      scales[e] = tables_i8(xp, tu, tq + e * (tu / kMu * kTableSize), scratch);
    } else {
      tables_f32_half(xp, tu / kMu, tf + e * (tu / kMu * kHalfTable));
    }
  }
  const float* ptrs[8];
  for (int64_t e = s0; e < s1; e += 8) {
    const int cnt = static_cast<int>(std::min<int64_t>(8, s1 - e));
    for (int l = 0; l < cnt; ++l) ptrs[l] = x + ((e + l) % m) * L.k + ((e + l) / m) * L.unit;
    sums_in_order(ptrs, cnt, L.unit, xsum + e);
  }
}

struct OcScratch {
  Scratch buf;
  OcTables t;
  int8_t* tq = nullptr;
  float* scales = nullptr;
  float* tf = nullptr;
  float* xsum = nullptr;

  OcScratch(const Layout& L, bool fast, int64_t m) : buf(carve(L, fast, m, nullptr)) {
    carve(L, fast, m, this);
    t.tq = tq;
    t.scales = scales;
    t.tf = tf;
    t.xsum = xsum;
    t.m = m;
    t.blocks_per_unit = L.unit / L.kb;
    t.plan_chunks(L.q);
  }
  static size_t carve(const Layout& L, bool fast, int64_t m, OcScratch* s) {
    Carver c(s == nullptr ? nullptr : s->buf.data());
    const int64_t chunks = L.k / kMu * m;
    int8_t* tq = fast ? c.take<int8_t>(static_cast<size_t>(chunks * kTableSize)) : nullptr;
    float* scales = fast ? c.take<float>(static_cast<size_t>(L.k / L.kb * m)) : nullptr;
    float* tf = fast ? nullptr : c.take<float>(static_cast<size_t>(chunks * kHalfTable));
    float* xsum = L.has_offset ? c.take<float>(static_cast<size_t>(L.units * m)) : nullptr;
    if (s != nullptr) {
      s->tq = tq;
      s->scales = scales;
      s->tf = tf;
      s->xsum = xsum;
    }
    return c.used();
  }
};

}  // namespace

void gemm_oc(std::span<const OcPart> parts, bool fast, const float* x, int64_t m, ThreadPool& pool) {
  // The parts share k, the group and the table block, so one set of tables serves them all;
  // group sums are built when any part has offsets.
  Layout T = parts[0].L;
  for (const OcPart& p : parts) T.has_offset = T.has_offset || p.L.has_offset;
  OcScratch sc(T, fast, m);
  const int64_t items = T.k / (fast ? T.kb : T.unit) * m;
  const int64_t sums = T.has_offset ? T.units * m : 0;
  build_tables(T.k * m, items, sums, pool, [&](int64_t e0, int64_t e1, int64_t s0, int64_t s1) {
    build_oc(T, fast, x, m, e0, e1, s0, s1, sc.tq, sc.scales, sc.tf, sc.xsum);
  });
  std::vector<OcTables> plans(parts.size(), sc.t);  // the tables, with each part's plane chunking
  for (size_t j = 0; j < parts.size(); ++j) plans[j].plan_chunks(parts[j].L.q);
  const PartTiles<OcPart> tiles(parts);
  WorkQueue queue(0, tiles.total(), pool.size());
  pool.run([&](int, int) {
    alignas(64) float acc[kMaxM * kTileRows];
    auto each_tile = [&](auto&& tile_fn) {
      PartTiles<OcPart>::Cursor at;
      for (int64_t t0, t1; queue.take(t0, t1);) {
        for (int64_t g = t0; g < t1; ++g) {
          const auto [p, tile] = tiles.locate(g, at);
          std::fill(acc, acc + m * kTileRows, 0.0f);
          tile_fn(p.L, plans[at.part], p.data + tile * p.L.tile_bytes);
          store_tile(acc, m, p.L.n, tile * kTileRows, p.y);
        }
      }
    };
    if (fast) {
      with_block_vecs(T.kb / 8, [&](auto nj) {
        each_tile([&](const Layout& L, const OcTables& t, const uint8_t* tp) {
          if (L.uniform) return tile_oc_fold_q<decltype(nj)::value>(L, t, tp, acc);
          tile_oc_fast<decltype(nj)::value>(L, t, tp, acc);
        });
      });
    } else {
      each_tile([&](const Layout& L, const OcTables& t, const uint8_t* tp) { tile_oc_exact(L, t, tp, acc); });
    }
  });
}

// int8 partial sums (test hook): the same table build and lookup_block as the fast gemm, m = 1.
void partials_oc(const Layout& L, const uint8_t* data, const float* x, int32_t* out) {
  OcScratch sc(L, true, 1);
  const int64_t nb = L.k / L.kb;
  build_oc(L, true, x, 1, 0, nb, 0, 0, sc.tq, sc.scales, nullptr, nullptr);
  const int64_t bpu = L.unit / L.kb;
  with_block_vecs(L.kb / 8, [&](auto nj) {
    constexpr int kNj = decltype(nj)::value;
    for (int64_t tile = 0; tile < L.tiles; ++tile) {
      for (int64_t u = 0; u < L.units; ++u) {
        const uint8_t* up = L.unit_at(data + tile * L.tile_bytes, u);
        for (int i = 0; i < L.q; ++i) {
          for (int64_t bb = 0; bb < bpu; ++bb) {
            const int64_t blk = u * bpu + bb;
            __m256i lo, hi;
            const uint8_t* w = up + i * L.plane_bytes + bb * 32 * kNj;
            lookup_block<1, 1, kNj>(w, 0, sc.tq + blk * 32 * kNj, 0, &lo, &hi);
            store_partials(L, lo, hi, tile * kTileRows, i, blk, out);
          }
        }
      }
    }
  });
}

}  // namespace lutq::kernels::avx2

#pragma GCC pop_options
