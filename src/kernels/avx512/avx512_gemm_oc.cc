// The per-OC gemm of the AVX-512 backend: tables of every activation row are built once (first
// pool.run), then threads take 32-row tiles from a queue and stream them unit (group) by unit.
//
// Float order: both paths repeat the scalar reference's operations in its order (per plane:
// s = Σ chunks (exact) or Σ blocks scale·isum (fast), left to right; acc_g = Σ_i α_i·s_i
// (+ z·Σx); y = Σ_groups acc_g), so they agree with it bit for bit.
// GCC 12's AVX-512 intrinsics initialise their `_mm512_undefined_*()` operands from themselves
// and, once inlined into unrolled loops, trip -Wuninitialized inside the system header (a
// compiler false positive, fixed in GCC 13). The header's code is placed where it is first
// included, so the warning is switched off for this file before that.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <immintrin.h>

#include "core/thread_pool.h"
#include "kernels/avx2/avx2_scratch.h"
#include "kernels/avx512/avx512_internal.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/lut_tables.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vnni,fma,f16c,bmi2")

namespace lutq::kernels::avx512 {
namespace {

using avx2::Carver;
using avx2::build_tables;
using avx2::PartTiles;
using avx2::Scratch;
using avx2::WorkQueue;

struct OcTables {
  const int8_t* tq = nullptr;     // fast: [block][m][kb/4][16] (vpermb order, i8_table_at)
  const float* scales = nullptr;  // fast: [block][m]
  const float* tf = nullptr;      // exact: [group][m][g/4][16]
  const float* xsum = nullptr;    // [group][m] when has_offset
  int64_t m = 0;
  int64_t blocks_per_unit = 0;    // g / kb
};

// Planes per pass for MB activation rows: one table load serves them all. m = 1 takes one plane
// per pass: measured on Zen 4 with huge pages (4096x4096, 1 thread), two planes per pass (two
// interleaved weight streams) read from DRAM at 0.29 / 0.57 ms for q = 2 / 4 and one plane at
// 0.235 / 0.46 ms, for 0.124 -> 0.141 and 0.23 -> 0.27 ms in cache.
template <int MB>
constexpr int planes_per_pass() { return MB == 2 ? 2 : 1; }

// accg (+)= α_i·s for one plane (rows 16h..16h+15 in s[2*mm + h]). The reference starts from
// acc_g = 0; taking the first product as is can differ from 0 + p only in the sign of a zero,
// which the final acc + accg (acc starts at +0) removes again.
template <int MB>
inline void add_plane(const Layout& L, const uint8_t* up, int64_t u, int i, const __m512* s, __m512* accg) {
  const bool first = i == 0;
  __m512 al[2];
  load_alpha32(L, up, u, i, al);
#pragma GCC unroll 8
  for (int e = 0; e < MB * 2; ++e) {
    const __m512 p = _mm512_mul_ps(al[e % 2], s[e]);
    accg[e] = first ? p : _mm512_add_ps(accg[e], p);
  }
}

// accg += z·xsum (with offsets); acc += accg: the end of a unit, in the reference's order.
template <int MB>
inline void finish_unit(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0,
                        __m512* accg, float* acc) {
  if (L.has_offset) {
    __m512 z[2];
    load_f16x32(up + L.offset_in_unit(), z);
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const __m512 xs = _mm512_set1_ps(t.xsum[u * t.m + m0 + mm]);
      for (int h = 0; h < 2; ++h) accg[2 * mm + h] = _mm512_add_ps(accg[2 * mm + h], _mm512_mul_ps(z[h], xs));
    }
  }
#pragma GCC unroll 8
  for (int e = 0; e < MB * 2; ++e) {
    float* p = acc + (m0 + e / 2) * kTileRows + 16 * (e % 2);
    _mm512_store_ps(p, _mm512_add_ps(_mm512_load_ps(p), accg[e]));
  }
}

// Fast path, planes i0 .. i0+QB of unit u, activation rows m0 .. m0+MB: per plane
// s = Σ_blocks scale_b·float(isum_b) (the first term as is: never −0), then accg (+)= α_i·s.
template <int MB, int QB, int NS>
[[gnu::noinline]] void planes_fast(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0,
                                   int i0, __m512* accg) {
  constexpr int64_t kTabBytes = kStepBytes * NS;  // one block's int8 tables, and its plane bytes
  __m512 s[QB][MB * 2];
  for (int64_t bb = 0; bb < t.blocks_per_unit; ++bb) {
    const int64_t blk = u * t.blocks_per_unit + bb;
    __m512i d[QB * MB * 2];
    lookup_block<MB, QB, NS>(up + i0 * L.plane_bytes + bb * kTabBytes, L.plane_bytes,
                             t.tq + (blk * t.m + m0) * kTabBytes, kTabBytes, d);
#pragma GCC unroll 4
    for (int mm = 0; mm < MB; ++mm) {
      const __m512 sc = _mm512_set1_ps(t.scales[blk * t.m + m0 + mm]);
#pragma GCC unroll 4
      for (int qi = 0; qi < QB; ++qi) {
        for (int h = 0; h < 2; ++h) {
          const __m512 p = _mm512_mul_ps(sc, _mm512_cvtepi32_ps(d[(qi * MB + mm) * 2 + h]));
          s[qi][2 * mm + h] = bb == 0 ? p : _mm512_add_ps(s[qi][2 * mm + h], p);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int qi = 0; qi < QB; ++qi) add_plane<MB>(L, up, u, i0 + qi, s[qi], accg);
}

// Fast path: unit u of one tile, activation rows m0 .. m0+MB, into acc[(m0+mm)*32 + row].
template <int MB, int NS>
void unit_fast(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0, float* acc) {
  constexpr int kQb = planes_per_pass<MB>();
  __m512 accg[MB * 2];
  int i0 = 0;
  for (; i0 + kQb <= L.q; i0 += kQb) planes_fast<MB, kQb, NS>(L, t, up, u, m0, i0, accg);
  for (; i0 < L.q; ++i0) planes_fast<MB, 1, NS>(L, t, up, u, m0, i0, accg);  // the rest, one at a time
  finish_unit<MB>(L, t, up, u, m0, accg, acc);
}

// Exact path: per plane, s = Σ chunks of the fp32 entries (from 0, in chunk order).
template <int MB, int QB>
void planes_exact(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0, int i0,
                  __m512* accg) {
  const int64_t tstride = L.unit / kMu * kFullTable;
  __m512 s[QB * MB * 2];
  for (auto& v : s) v = _mm512_setzero_ps();
  lookup_f32<MB, QB>(up + i0 * L.plane_bytes, L.plane_bytes, unit_steps(L), t.tf + (u * t.m + m0) * tstride, tstride,
                     s);
  for (int qi = 0; qi < QB; ++qi) add_plane<MB>(L, up, u, i0 + qi, s + qi * MB * 2, accg);
}

template <int MB>
void unit_exact(const Layout& L, const OcTables& t, const uint8_t* up, int64_t u, int64_t m0, float* acc) {
  __m512 accg[MB * 2];
  int i0 = 0;
  for (; i0 + 2 <= L.q; i0 += 2) planes_exact<MB, 2>(L, t, up, u, m0, i0, accg);
  if (i0 < L.q) planes_exact<MB, 1>(L, t, up, u, m0, i0, accg);
  finish_unit<MB>(L, t, up, u, m0, accg, acc);
}

// One tile, all units, all activation rows (MB at a time).
template <int NS>
void tile_fast(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  for (int64_t u = 0; u < L.units; ++u) {
    const uint8_t* up = L.unit_at(tp, u);
    int64_t m0 = 0;
    for (; m0 + kFastRows <= t.m; m0 += kFastRows) unit_fast<kFastRows, NS>(L, t, up, u, m0, acc);
    switch (t.m - m0) {
      case 3: unit_fast<3, NS>(L, t, up, u, m0, acc); break;
      case 2: unit_fast<2, NS>(L, t, up, u, m0, acc); break;
      case 1: unit_fast<1, NS>(L, t, up, u, m0, acc); break;
      default: break;
    }
  }
}

void tile_exact(const Layout& L, const OcTables& t, const uint8_t* tp, float* acc) {
  for (int64_t u = 0; u < L.units; ++u) {
    const uint8_t* up = L.unit_at(tp, u);
    int64_t m0 = 0;
    for (; m0 + kExactRows <= t.m; m0 += kExactRows) unit_exact<kExactRows>(L, t, up, u, m0, acc);
    if (m0 < t.m) unit_exact<1>(L, t, up, u, m0, acc);
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
      tables_f32(xp, tu / kMu, tf + e * (tu / kMu * kFullTable));
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
    t = OcTables{tq, scales, tf, xsum, m, L.unit / L.kb};
  }
  static size_t carve(const Layout& L, bool fast, int64_t m, OcScratch* s) {
    Carver c(s == nullptr ? nullptr : s->buf.data());
    const int64_t chunks = L.k / kMu * m;
    int8_t* tq = fast ? c.take<int8_t>(static_cast<size_t>(chunks * kTableSize)) : nullptr;
    float* scales = fast ? c.take<float>(static_cast<size_t>(L.k / L.kb * m)) : nullptr;
    float* tf = fast ? nullptr : c.take<float>(static_cast<size_t>(chunks * kFullTable));
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
          tile_fn(p.L, p.data + tile * p.L.tile_bytes);
          store_tile(acc, m, p.L.n, tile * kTileRows, p.y);
        }
      }
    };
    if (fast) {
      with_block_steps(T.kb / kStepActs, [&](auto ns) {
        each_tile([&](const Layout& L, const uint8_t* tp) { tile_fast<decltype(ns)::value>(L, sc.t, tp, acc); });
      });
    } else {
      each_tile([&](const Layout& L, const uint8_t* tp) { tile_exact(L, sc.t, tp, acc); });
    }
  });
}

// int8 partial sums (test hook): the same table build and lookup_block as the fast gemm, m = 1.
void partials_oc(const Layout& L, const uint8_t* data, const float* x, int32_t* out) {
  OcScratch sc(L, true, 1);
  const int64_t nb = L.k / L.kb;
  build_oc(L, true, x, 1, 0, nb, 0, 0, sc.tq, sc.scales, nullptr, nullptr);
  const int64_t bpu = L.unit / L.kb;
  with_block_steps(L.kb / kStepActs, [&](auto ns) {
    constexpr int kNs = decltype(ns)::value;
    for (int64_t tile = 0; tile < L.tiles; ++tile) {
      for (int64_t u = 0; u < L.units; ++u) {
        const uint8_t* up = L.unit_at(data + tile * L.tile_bytes, u);
        for (int i = 0; i < L.q; ++i) {
          for (int64_t bb = 0; bb < bpu; ++bb) {
            const int64_t blk = u * bpu + bb;
            __m512i d[2];
            lookup_block<1, 1, kNs>(up + i * L.plane_bytes + bb * kStepBytes * kNs, 0,
                                    sc.tq + blk * kStepBytes * kNs, 0, d);
            store_partials(L, d, tile * kTileRows, i, blk, out);
          }
        }
      }
    }
  });
}

}  // namespace lutq::kernels::avx512

#pragma GCC pop_options
