// The memory kinds at the attend() interface against the fp32 cache, with error bounds derived
// from each kind's quantization step (docs/memory.md, "Error bounds"):
//
// A stored value x comes back as x̂ with |x − x̂| <= Δ (per kind below). For one query row q of
// one head, a key error Δ_k moves each score s_j = scale·q·k_j by at most ε = scale·‖q‖₁·Δ_k, so
// each softmax weight changes by a factor within [e^−2ε, e^2ε] and ‖p̂ − p‖₁ <= e^2ε − 1. Then
// o = Σ p_j v_j moves by at most (e^2ε − 1)·max|v̂| + Δ_v per output value.
//
// Δ per kind: f16 2^−11·|x| (round to nearest); q8 absmax(head)/254; q4 (KIVI) half the step of
// the value's group, step <= (range + outward fp16 rounding)/15; XQuant: the key/value error of
// a latent error Δ_c (half its group's step) is Σ_j |(W·U)_{o,j}|·Δ_c (U = I when x is cached).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "model/memory.h"
#include "model/memory/group_codec.h"
#include "model/memory/kv_basis.h"
#include "model/memory/latent_store.h"

namespace lutq::model {
namespace {

// A k/v path of plain dense weights, no norm, no RoPE: keys and values are x·Wᵀ + b.
class DenseProjector final : public KvProjector {
 public:
  DenseProjector(int64_t e, int64_t kvd, std::mt19937& rng) : e_(e), kvd_(kvd) {
    std::normal_distribution<float> n(0.0f, 0.3f);
    for (auto* w : {&wk_, &wv_}) {
      w->resize(static_cast<size_t>(e * kvd));
      for (float& x : *w) x = n(rng);
    }
    bk_.resize(static_cast<size_t>(kvd));
    for (float& x : bk_) x = n(rng);
  }
  Status project(const float* x, int64_t m, float* k, float* v, ThreadPool&) const override {
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t o = 0; o < kvd_; ++o) {
        double sk = bk_[static_cast<size_t>(o)], sv = 0.0;
        for (int64_t c = 0; c < e_; ++c) {
          sk += static_cast<double>(x[t * e_ + c]) * wk_[static_cast<size_t>(o * e_ + c)];
          sv += static_cast<double>(x[t * e_ + c]) * wv_[static_cast<size_t>(o * e_ + c)];
        }
        k[t * kvd_ + o] = static_cast<float>(sk);
        v[t * kvd_ + o] = static_cast<float>(sv);
      }
    }
    return Status::ok();
  }
  Status project_keys(const float* x, int64_t m, float* k, ThreadPool& pool) const override {
    std::vector<float> v(static_cast<size_t>(m * kvd_));
    return project(x, m, k, v.data(), pool);
  }
  Status project_values(const float* x, int64_t m, float* v, ThreadPool& pool) const override {
    std::vector<float> k(static_cast<size_t>(m * kvd_));
    return project(x, m, k.data(), v, pool);
  }
  std::span<const float> k_bias() const override { return bk_; }
  std::span<const float> v_bias() const override { return {}; }
  RopeTable rope_table(int64_t, int64_t) const override { return RopeTable{0, {0.0f}, {0.0f}}; }
  void position_keys(float*, int64_t, const RopeTable&, int64_t) const override {}

 private:
  int64_t e_, kvd_;
  std::vector<float> wk_, wv_, bk_;
};

struct Case {
  MemoryShape shape{1, 64, 4, 2, 16, 80, 1};
  int64_t positions = 70;  // stored in chunks of 7 (some rows of a chunk see later keys)
};

struct Outputs {
  std::vector<float> q, k, v, x;  // all positions
  std::vector<float> got, want;   // attention outputs of every position, the kind's and fp32's
};

// Stores the positions in chunks into both memories and collects the attention outputs.
Outputs run(MemoryKind kind, const MemoryOptions& options, const Case& c, const KvProjector& proj, uint32_t seed) {
  const MemoryShape& s = c.shape;
  const int64_t qd = s.n_head * s.head_dim, kvd = s.n_head_kv * s.head_dim, n = c.positions;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Outputs r;
  r.q.resize(static_cast<size_t>(n * qd));
  r.x.resize(static_cast<size_t>(n * s.n_embd));
  for (float& f : r.q) f = dist(rng);
  for (float& f : r.x) f = dist(rng);
  r.k.resize(static_cast<size_t>(n * kvd));
  r.v.resize(r.k.size());
  ThreadPool pool(2);
  EXPECT_TRUE(proj.project(r.x.data(), n, r.k.data(), r.v.data(), pool).is_ok());
  std::unique_ptr<Memory> mem = std::move(*make_memory(kind, s, options));
  std::unique_ptr<Memory> ref = std::move(*make_memory(MemoryKind::kF32, s));
  r.got.resize(r.q.size());
  r.want.resize(r.q.size());
  for (int64_t first = 0; first < n; first += 7) {
    const int64_t m = std::min<int64_t>(7, n - first);
    std::vector<BatchRow> rows;
    for (int64_t p = first; p < first + m; ++p) rows.push_back({1, p, 0, true});
    const AttentionRows in{rows, r.q.data() + first * qd, r.k.data() + first * kvd, r.v.data() + first * kvd,
                           r.x.data() + first * s.n_embd, &proj};
    EXPECT_TRUE(mem->attend(0, in, r.got.data() + first * qd, OpIsa{}, pool).is_ok());
    EXPECT_TRUE(ref->attend(0, in, r.want.data() + first * qd, OpIsa{}, pool).is_ok());
  }
  return r;
}

// max over the bound of (row, head): (e^2ε − 1)·max|v| + Δ_v, ε = scale·‖q_h‖₁·Δ_k.
void expect_within(const Outputs& r, const Case& c, float dk, float dv, const char* what) {
  const MemoryShape& s = c.shape;
  const int64_t hd = s.head_dim, qd = s.n_head * hd;
  float vmax = 0.0f;
  for (float f : r.v) vmax = std::max(vmax, std::abs(f));
  vmax += dv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t tight = 0;
  for (int64_t t = 0; t < c.positions; ++t) {
    for (int64_t h = 0; h < s.n_head; ++h) {
      float q1 = 0.0f;
      for (int64_t i = 0; i < hd; ++i) q1 += std::abs(r.q[static_cast<size_t>(t * qd + h * hd + i)]);
      const float eps = scale * q1 * dk;
      const float bound = std::expm1(2.0f * eps) * vmax + dv + 1e-5f;
      for (int64_t i = 0; i < hd; ++i) {
        const auto at = static_cast<size_t>(t * qd + h * hd + i);
        const float err = std::abs(r.got[at] - r.want[at]);
        ASSERT_LE(err, bound) << what << " position " << t << " head " << h;
        tight += err > 0.0f ? 1 : 0;
      }
    }
  }
  EXPECT_GT(tight, 0) << what << ": the kind should not be lossless on random data";
}

float absmax(const std::vector<float>& x) {
  float m = 0.0f;
  for (float f : x) m = std::max(m, std::abs(f));
  return m;
}

// Half a GroupCodec step of a group spanning `range` within values of magnitude <= amax, with
// the outward fp16 rounding of lo and step: ((range + 2^-10·amax)·(1 + 2^-10) / levels) / 2.
float half_step(float range, float amax, int bits) {
  return (range + amax * 0x1p-10f) * (1.0f + 0x1p-10f) / static_cast<float>((1 << bits) - 1) / 2.0f;
}

TEST(Memory, F16AndQ8WithinTheirStepBounds) {
  Case c;
  std::mt19937 rng(3);
  DenseProjector proj(c.shape.n_embd, c.shape.n_head_kv * c.shape.head_dim, rng);
  const Outputs f16 = run(MemoryKind::kF16, {}, c, proj, 5);
  expect_within(f16, c, absmax(f16.k) * 0x1p-11f, absmax(f16.v) * 0x1p-11f, "f16");
  const Outputs q8 = run(MemoryKind::kQ8, {}, c, proj, 5);
  expect_within(q8, c, absmax(q8.k) / 254.0f * 1.0001f, absmax(q8.v) / 254.0f * 1.0001f, "q8");
}

TEST(Memory, Q4WithinItsStepBound) {
  Case c;
  std::mt19937 rng(4);
  const int64_t kvd = c.shape.n_head_kv * c.shape.head_dim;
  DenseProjector proj(c.shape.n_embd, kvd, rng);
  const Outputs r = run(MemoryKind::kQ4, {}, c, proj, 6);
  // Keys: per channel over any group of 32 positions; values: per position over its channels.
  float dk = 0.0f, dv = 0.0f;
  for (int64_t ch = 0; ch < kvd; ++ch) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t p = 0; p < c.positions; ++p) {
      lo = std::min(lo, r.k[static_cast<size_t>(p * kvd + ch)]);
      hi = std::max(hi, r.k[static_cast<size_t>(p * kvd + ch)]);
    }
    dk = std::max(dk, half_step(hi - lo, absmax(r.k), 4));
  }
  for (int64_t p = 0; p < c.positions; ++p) {
    const auto row = r.v.begin() + p * kvd;
    const auto [lo, hi] = std::minmax_element(row, row + kvd);
    dv = std::max(dv, half_step(*hi - *lo, absmax(r.v), 4));
  }
  expect_within(r, c, dk, dv, "q4");
}

// XQuant caching x (2·kv_dim >= n_embd): Δ_k = max_o Σ_c |W_k[o,c]|·Δ_x. 70 positions: the first
// 64 quantized, the rest in the fp32 window.
TEST(Memory, XQuantWithinItsStepBound) {
  for (int bits : {8, 4}) {
    Case c;
    c.shape = MemoryShape{1, 32, 4, 2, 16, 80, 1};  // kv_dim 32 = n_embd: x is cached as is
    std::mt19937 rng(8);
    const int64_t kvd = 32;
    DenseProjector proj(32, kvd, rng);
    const Outputs r = run(MemoryKind::kXQuant, MemoryOptions{bits, 4}, c, proj, 9);
    ThreadPool pool(1);
    const std::vector<double> w = *probe_kv_weights(proj, 32, kvd, pool);
    // x is quantized per channel over groups of 64 positions: bound each channel's step by its
    // range over all positions.
    float dx = 0.0f;
    for (int64_t ch = 0; ch < 32; ++ch) {
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t p = 0; p < c.positions; ++p) {
        lo = std::min(lo, r.x[static_cast<size_t>(p * 32 + ch)]);
        hi = std::max(hi, r.x[static_cast<size_t>(p * 32 + ch)]);
      }
      dx = std::max(dx, half_step(hi - lo, absmax(r.x), bits));
    }
    double wk = 0.0, wv = 0.0;
    for (int64_t o = 0; o < kvd; ++o) {
      double sk = 0.0, sv = 0.0;
      for (int64_t ch = 0; ch < 32; ++ch) {
        sk += std::abs(w[static_cast<size_t>(o * 32 + ch)]);
        sv += std::abs(w[static_cast<size_t>((kvd + o) * 32 + ch)]);
      }
      wk = std::max(wk, sk);
      wv = std::max(wv, sv);
    }
    expect_within(r, c, static_cast<float>(wk) * dx * 1.001f, static_cast<float>(wv) * dx * 1.001f,
                  bits == 8 ? "xquant:8" : "xquant:4");
  }
}

// XQuant caching the latent (2·kv_dim < n_embd; per-head bases): a latent error Δ_c (half the
// channel's step) moves key o by at most Σ_j |key_map[o][j]|·Δ_c(j), and the latent-space value
// output (Σ_j p_j ĉ_j)·A_vᵀ + b_v by Σ_j |value_map[o][j]|·Δ_c(j), as a rebuilt value would.
TEST(Memory, XQuantLatentWithinItsStepBound) {
  Case c;
  c.shape = MemoryShape{1, 96, 4, 2, 16, 80, 1};  // r = 2·kv_dim = 64 < n_embd
  const int64_t e = 96, hd = 16, kvd = 32;
  std::mt19937 rng(31);
  DenseProjector proj(e, kvd, rng);
  const Outputs r = run(MemoryKind::kXQuant, MemoryOptions{4, 4, XQuantBasis::kPerHead}, c, proj, 32);
  ThreadPool pool(1);
  const KvBasis b = *kv_basis(proj, e, 2, hd, KvBlocks::kPerHead, pool);
  std::vector<float> lat(static_cast<size_t>(c.positions * b.rank));
  for (int64_t p = 0; p < c.positions; ++p) {
    for (int64_t j = 0; j < b.rank; ++j) {
      double d = 0.0;
      for (int64_t ch = 0; ch < e; ++ch) d += double{r.x[static_cast<size_t>(p * e + ch)]} * b.ut[static_cast<size_t>(j * e + ch)];
      lat[static_cast<size_t>(p * b.rank + j)] = static_cast<float>(d);
    }
  }
  std::vector<float> dc(static_cast<size_t>(b.rank));
  for (int64_t j = 0; j < b.rank; ++j) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t p = 0; p < c.positions; ++p) {
      lo = std::min(lo, lat[static_cast<size_t>(p * b.rank + j)]);
      hi = std::max(hi, lat[static_cast<size_t>(p * b.rank + j)]);
    }
    dc[static_cast<size_t>(j)] = half_step(hi - lo, absmax(lat), 4);
  }
  const auto worst = [&](const std::vector<float>& map, bool key) {
    const int64_t width = key ? b.key_width : b.value_width;
    double m = 0.0;
    for (int64_t o = 0; o < kvd; ++o) {
      const int64_t off = key ? b.key_offset(o / hd) : b.value_offset(o / hd);
      double s = 0.0;
      for (int64_t j = 0; j < width; ++j) s += std::abs(map[static_cast<size_t>(o * width + j)]) * dc[static_cast<size_t>(off + j)];
      m = std::max(m, s);
    }
    return static_cast<float>(m);
  };
  expect_within(r, c, worst(b.key_map, true) * 1.001f, worst(b.value_map, false) * 1.001f, "xquant:4 latent");
}

// Kept in fp32, the rebuilt K and V are the cached ones up to rounding: low rank (grouped
// queries: the latent x·U) and full width alike, for XQuant and XQuant-CL.
TEST(Memory, XQuantInFp32RebuildsTheKeysExactly) {
  for (const MemoryShape shape : {MemoryShape{3, 64, 4, 1, 16, 40, 1}, MemoryShape{3, 32, 4, 2, 16, 40, 1}}) {
    for (const auto& [kind, basis] : {std::pair{MemoryKind::kXQuant, XQuantBasis::kJoint},
                                     std::pair{MemoryKind::kXQuant, XQuantBasis::kSplit},
                                     std::pair{MemoryKind::kXQuant, XQuantBasis::kPerHead},
                                     std::pair{MemoryKind::kXQuant, XQuantBasis::kHeadKeys},
                                     std::pair{MemoryKind::kXQuantCl, XQuantBasis::kJoint}}) {
      Case c;
      c.shape = shape;
      c.positions = 30;
      std::mt19937 rng(12);
      DenseProjector proj(shape.n_embd, shape.n_head_kv * shape.head_dim, rng);
      const Outputs r = run(kind, MemoryOptions{32, 2, basis}, c, proj, 13);
      float worst = 0.0f;
      for (size_t i = 0; i < r.got.size(); ++i) worst = std::max(worst, std::abs(r.got[i] - r.want[i]));
      EXPECT_LT(worst, 2e-4f) << memory_kind_name(kind) << " n_embd " << shape.n_embd;
      // Values attended in the latent space ((Σ p_j ĉ_j)·A_vᵀ + b_v, never rebuilt) equal the
      // rebuilt values' attention up to fp32 rounding, relative to the outputs' size.
      EXPECT_LT(worst, 1e-5f * absmax(r.want)) << memory_kind_name(kind) << " n_embd " << shape.n_embd;
    }
  }
}

// Each block's columns of U are orthonormal, and the maps rebuild x·Wᵀ from the latent x·U:
// k_g = (x·U)[key columns of g]·key_mapᵀ, likewise v (biases aside), for both block layouts.
TEST(Memory, KvBasisSpansTheRowSpace) {
  std::mt19937 rng(21);
  const int64_t e = 64, heads = 2, hd = 8, kvd = heads * hd;
  DenseProjector proj(e, kvd, rng);
  ThreadPool pool(1);
  const std::vector<double> w = *probe_kv_weights(proj, e, kvd, pool);
  std::vector<float> x(static_cast<size_t>(e));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& f : x) f = dist(rng);
  for (KvBlocks blocks : {KvBlocks::kJoint, KvBlocks::kSplit, KvBlocks::kPerHead, KvBlocks::kHeadKeys}) {
    const KvBasis b = *kv_basis(proj, e, heads, hd, blocks, pool);
    ASSERT_EQ(b.rank, 2 * kvd);
    EXPECT_EQ(static_cast<int64_t>(b.ut.size() + b.key_map.size() + b.value_map.size()),
              kv_basis_floats(blocks, e, heads, hd));
    for (int64_t i = 0; i < b.rank; ++i) {  // orthonormal columns within each block
      const int64_t block = i < kvd ? b.key_width : b.value_width;
      const int64_t base = i < kvd || b.key_width == b.rank ? 0 : kvd;
      for (int64_t j = base + (i - base) / block * block; j < base + ((i - base) / block + 1) * block; ++j) {
        double d = 0.0;
        for (int64_t ch = 0; ch < e; ++ch) d += double{b.ut[static_cast<size_t>(i * e + ch)]} * b.ut[static_cast<size_t>(j * e + ch)];
        EXPECT_NEAR(d, i == j ? 1.0 : 0.0, 1e-5);
      }
    }
    std::vector<double> c(static_cast<size_t>(b.rank), 0.0);
    for (int64_t i = 0; i < b.rank; ++i) {
      for (int64_t ch = 0; ch < e; ++ch) c[static_cast<size_t>(i)] += double{x[static_cast<size_t>(ch)]} * b.ut[static_cast<size_t>(i * e + ch)];
    }
    for (int64_t o = 0; o < 2 * kvd; ++o) {
      const bool key = o < kvd;
      const int64_t g = (o % kvd) / hd;
      const int64_t width = key ? b.key_width : b.value_width;
      const float* map = (key ? b.key_map : b.value_map).data() + (o % kvd) * width;
      const int64_t off = key ? b.key_offset(g) : b.value_offset(g);
      double got = 0.0, want = 0.0;
      for (int64_t j = 0; j < width; ++j) got += c[static_cast<size_t>(off + j)] * map[j];
      for (int64_t ch = 0; ch < e; ++ch) want += w[static_cast<size_t>(o * e + ch)] * x[static_cast<size_t>(ch)];
      EXPECT_NEAR(got, want, 1e-4 * (1.0 + std::abs(want))) << "output " << o;
    }
  }
}

// Re-writing a position inside a quantized group (after a truncate) brings the group back into
// the window: earlier rows within half a step, the new row exact, later groups still readable.
TEST(Memory, LatentStoreRewritesInsideAQuantizedGroup) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t width = 8;
  LatentStore store(1, 100, width, 4, 16);
  std::vector<float> rows(static_cast<size_t>(40 * width));
  for (float& f : rows) f = dist(rng);
  ThreadPool pool(1);
  for (int64_t p = 0; p < 40; ++p) store.put(0, p, rows.data() + p * width);  // groups 0, 1 quantized
  std::vector<float> fresh(static_cast<size_t>(width), 7.0f);
  store.put(0, 20, fresh.data());  // into group 1
  std::vector<float> got(static_cast<size_t>(21 * width));
  store.get(0, 0, 21, got.data(), pool);
  float amax = 0.0f;
  for (float f : rows) amax = std::max(amax, std::abs(f));
  for (int64_t p = 0; p < 20; ++p) {
    for (int64_t c = 0; c < width; ++c) {
      EXPECT_NEAR(got[static_cast<size_t>(p * width + c)], rows[static_cast<size_t>(p * width + c)],
                  half_step(2 * amax, amax, 4)) << p;
    }
  }
  for (int64_t c = 0; c < width; ++c) EXPECT_EQ(got[static_cast<size_t>(20 * width + c)], 7.0f);
}

TEST(Memory, F16cWideningMatchesThePortableOne) {
  if (!detect_cpu().avx2) GTEST_SKIP() << "no AVX2/F16C";
  std::vector<uint16_t> h(65536 + 3);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> got(h.size());
  fp16_to_fp32_avx2(h.data(), got.data(), static_cast<int64_t>(h.size()));
  for (size_t i = 0; i < h.size(); ++i) {
    const float want = fp16_to_fp32(h[i]);
    if (std::isnan(want)) {  // the hardware quiets signalling NaNs; the portable form keeps the payload
      ASSERT_TRUE(std::isnan(got[i])) << i;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want)) << i;
  }
}

TEST(Memory, GroupCodecErrorIsHalfAStep) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.5f, 2.0f);
  for (int bits = 2; bits <= 8; ++bits) {
    const GroupCodec codec(bits, 32);
    std::vector<float> x(128), y(128), step(4);
    for (float& f : x) f = dist(rng);
    std::vector<uint8_t> enc(static_cast<size_t>(codec.row_bytes(128)));
    codec.encode(x.data(), 128, enc.data());
    codec.decode(enc.data(), 128, y.data());
    codec.steps(enc.data(), 128, step.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::abs(x[i] - y[i]), step[i / 32] * 0.5f * 1.0001f) << bits;
  }
}

TEST(Memory, AccountingEqualsTheAllocation) {
  const MemoryShape s{3, 64, 4, 1, 16, 100, 2};
  const int64_t kvd = 16, tokens = 3 * 100 * 2;
  for (const char* name : {"f32", "f16", "q8", "q4", "xquant", "xquant:2", "xquant-cl", "xquant:32"}) {
    const MemorySpec spec = *parse_memory_spec(name);
    std::unique_ptr<Memory> m = std::move(*make_memory(spec.kind, s, spec.options));
    EXPECT_EQ(m->bytes(), memory_bytes(spec.kind, s, spec.options)) << name;
    EXPECT_LE(m->bytes_per_token() * 100 * 2, m->bytes()) << name;
  }
  for (MemoryKind kind : {MemoryKind::kQ4, MemoryKind::kXQuant, MemoryKind::kXQuantCl}) {
    EXPECT_EQ(make_memory(kind, MemoryShape{3, 64, 4, 1, 16, int64_t{1} << 40, 1}).status().code(),
              StatusCode::kOutOfMemory);
  }
  EXPECT_EQ(make_memory(MemoryKind::kF16, s).value()->bytes(), tokens * 2 * kvd * 2);
  EXPECT_EQ(make_memory(MemoryKind::kQ8, s).value()->bytes(), tokens * 2 * (kvd + 4));
  // XQuant at 4 bits: the latent of rank 2·kv_dim = 32, per channel over groups of 64 positions:
  // 32 bytes of codes and 4 of scale/min per channel and group (18 bytes per position and layer);
  // per slot one group (100 / 64), the fp32 window [64][32], a counter and the sink rows; per layer Uᵀ [32][64]
  // and the key and value maps [16][32] each in fp32 (the joint basis; per-head bases: [16][16]
  // each; XQuant-CL adds M_lᵀ [32][32]).
  std::unique_ptr<Memory> xq = std::move(*make_memory(MemoryKind::kXQuant, s));
  EXPECT_EQ(xq->bytes_per_token(), 3 * 18);
  const int64_t store = 3 * 2 * (32 * 36 + 64 * 32 * 4 + 8 + LatentStore::kSink * 32 * 4);
  EXPECT_EQ(xq->bytes(), store + 3 * (32 * 64 + 2 * 16 * 32) * 4);
  MemoryOptions per_head;
  per_head.basis = XQuantBasis::kPerHead;
  EXPECT_EQ(make_memory(MemoryKind::kXQuant, s, per_head).value()->bytes(), store + 3 * (32 * 64 + 2 * 16 * 16) * 4);
  EXPECT_EQ(memory_bytes(MemoryKind::kXQuant, s, per_head), store + 3 * (32 * 64 + 2 * 16 * 16) * 4);
  EXPECT_EQ(make_memory(MemoryKind::kXQuantCl, s).value()->bytes(), store + 3 * (32 * 64 + 2 * 16 * 32 + 32 * 32) * 4);
}

// Only the XQuant kinds rebuild K and V through the model's k/v layers (no adapter rows on them);
// a memory's kind() names its kind, so forward() asks the kind.
TEST(Memory, OnlyXQuantRebuildsFromLayerInputs) {
  const MemoryShape s{3, 64, 4, 1, 16, 100, 2};
  for (const char* name : {"f32", "f16", "q8", "q4", "xquant", "xquant-cl"}) {
    const MemoryKind kind = *parse_memory_kind(name);
    const bool xquant = std::string_view(name).starts_with("xquant");
    EXPECT_EQ(rebuilds_from_layer_inputs(kind), xquant) << name;
    EXPECT_EQ(*parse_memory_kind(make_memory(kind, s).value()->kind()), kind) << name;
  }
}

// The server's slots for a budget: the most sequences whose memory_bytes fits, fixed costs once.
TEST(Memory, SequencesInBudgetFillTheBudget) {
  const MemoryShape s{3, 64, 4, 1, 16, 200, 1};
  for (const char* name : {"f32", "f16", "q8", "q4", "xquant", "xquant-cl:2"}) {
    const MemorySpec spec = *parse_memory_spec(name);
    const double budget = 1 << 20;
    const int64_t n = sequences_in_budget(spec.kind, s, spec.options, budget);
    ASSERT_GE(n, 1) << name;
    MemoryShape fits = s, over = s;
    fits.sequences = n;
    over.sequences = n + 1;
    EXPECT_LE(memory_bytes(spec.kind, fits, spec.options), budget) << name;
    EXPECT_GT(memory_bytes(spec.kind, over, spec.options), budget) << name;
  }
  EXPECT_GT(sequences_in_budget(MemoryKind::kQ4, s, {}, 1 << 20), 2 * sequences_in_budget(MemoryKind::kF32, s, {}, 1 << 20));
  EXPECT_EQ(sequences_in_budget(MemoryKind::kF32, s, {}, 1000.0), 0);
}

TEST(Memory, SpecsParseAndInvalidOnesAreRefused) {
  EXPECT_EQ(parse_memory_spec("q4").value().kind, MemoryKind::kQ4);
  EXPECT_EQ(parse_memory_spec("xquant-cl:3").value().options.x_bits, 3);
  EXPECT_EQ(memory_spec_name(*parse_memory_spec("xquant:2")), "xquant:2");
  EXPECT_EQ(memory_spec_name(*parse_memory_spec("xquant")), "xquant");
  EXPECT_FALSE(parse_memory_spec("q8:4").is_ok());
  EXPECT_FALSE(parse_memory_spec("xquant:1").is_ok());
  EXPECT_FALSE(parse_memory_spec("xquant:").is_ok());
  EXPECT_NE(parse_memory_spec("q5").status().message().find("xquant-cl"), std::string::npos);
  // The basis layout after the bit width (xquant only), and back to the same name.
  EXPECT_EQ(parse_memory_spec("xquant:4:head").value().options.basis, XQuantBasis::kPerHead);
  EXPECT_EQ(parse_memory_spec("xquant:3:head-keys").value().options.basis, XQuantBasis::kHeadKeys);
  EXPECT_EQ(memory_spec_name(*parse_memory_spec("xquant:4:split")), "xquant:4:split");
  EXPECT_EQ(memory_spec_name(*parse_memory_spec("xquant:4:joint")), "xquant");
  EXPECT_FALSE(parse_memory_spec("xquant:4:diagonal").is_ok());
  EXPECT_FALSE(parse_memory_spec("xquant-cl:4:head").is_ok());
  EXPECT_FALSE(parse_memory_spec("xquant:4:").is_ok());
}

}  // namespace
}  // namespace lutq::model
