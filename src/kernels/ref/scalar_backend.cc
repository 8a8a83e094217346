// The scalar LUT reference: exactly the algorithm of the SIMD backends (tables of kMu = 4
// activations, fp32 or int8 entries, per-IC scales folded into the activations), one lookup at a
// time. It is the spec of the SIMD kernels: their int8 partial sums must equal its own exactly.
#include <algorithm>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/kernel.h"
#include "kernels/lut_tables.h"

namespace lutq::kernels {
namespace {

bool scalar_available(const CpuFeatures&) { return true; }

PackedMatrix scalar_repack(const format::BcqMatrix& w, Precision p) {
  PackedMatrix out = canonical_packed(w, Isa::kScalar, p);
  out.uniform = lut_uniform(w);
  return out;
}

// The 4-bit table index of row r, plane i, chunk c (activations 4c..4c+3).
int nibble(const format::BcqMatrix& w, int i, int64_t r, int64_t c) {
  const uint8_t byte = w.bits[static_cast<size_t>((i * w.n + r) * w.row_bytes() + c / 2)];
  return (c & 1) ? (byte >> 4) : (byte & 15);
}

float half(uint16_t h) { return fp16_to_fp32(h); }

// Tables (fp32, or int8 + scales) of one activation vector.
struct Tables {
  std::vector<float> f32;
  std::vector<int8_t> i8;
  std::vector<float> scales;

  void build(const float* x, int64_t k, int64_t kb, Precision p) {
    f32.resize(static_cast<size_t>(k / kMu * kTableSize));
    build_tables_f32(x, k, f32.data());
    if (p == Precision::kFast) {
      i8.resize(f32.size());
      scales.resize(static_cast<size_t>(k / kb));
      quantize_tables_i8(f32.data(), k, kb, i8.data(), scales.data());
    }
  }
  // Σ over chunks [c0, c1) of the fp32 entries row r, plane i looks up, left to right.
  float sum_f32(const format::BcqMatrix& w, int i, int64_t r, int64_t c0, int64_t c1) const {
    float s = 0.0f;
    for (int64_t c = c0; c < c1; ++c) s += f32[static_cast<size_t>(c * kTableSize + nibble(w, i, r, c))];
    return s;
  }
  int32_t sum_i8(const format::BcqMatrix& w, int i, int64_t r, int64_t c0, int64_t c1) const {
    int32_t s = 0;
    for (int64_t c = c0; c < c1; ++c) s += i8[static_cast<size_t>(c * kTableSize + nibble(w, i, r, c))];
    return s;
  }
  // Σ over the blocks in chunks [c0, c1) of scale_b · (integer block sum), left to right.
  float sum_fast(const format::BcqMatrix& w, int i, int64_t r, int64_t c0, int64_t c1, int64_t kb) const {
    const int64_t cpb = kb / kMu;
    float s = 0.0f;
    for (int64_t c = c0; c < c1; c += cpb) {
      s += scales[static_cast<size_t>(c / cpb)] * static_cast<float>(sum_i8(w, i, r, c, c + cpb));
    }
    return s;
  }
  // Uniform scales, folded planes: Σ over the blocks of scale_b · (Σ_i 2^i · integer block sum
  // of plane i), left to right; the block's integer is exact (|·| < 2^17), so is its float.
  float sum_folded(const format::BcqMatrix& w, int64_t r, int64_t c0, int64_t c1, int64_t kb) const {
    const int64_t cpb = kb / kMu;
    float s = 0.0f;
    for (int64_t c = c0; c < c1; c += cpb) {
      int32_t d = 0;
      for (int i = 0; i < w.cfg.q; ++i) d += sum_i8(w, i, r, c, c + cpb) * (1 << i);
      s += scales[static_cast<size_t>(c / cpb)] * static_cast<float>(d);
    }
    return s;
  }
};

// Per-OC: one table set per activation row, shared by all rows and planes. `fold`
// (PackedMatrix::uniform, fast only): acc_g = α_0 · sum_folded instead of Σ_i α_i · s_i.
void gemm_per_oc(const format::BcqMatrix& w, Precision p, bool fold, const float* x, float* y, int64_t r0,
                 int64_t r1) {
  const int q = w.cfg.q;
  const int64_t kb = lut_block(w);
  const int64_t groups = w.k / w.cfg.g;
  const int64_t cpg = w.cfg.g / kMu;
  Tables t;
  t.build(x, w.k, kb, p);
  std::vector<float> xsum(static_cast<size_t>(groups), 0.0f);
  for (int64_t gi = 0; gi < groups; ++gi) {
    float s = 0.0f;
    for (int64_t c = gi * w.cfg.g; c < (gi + 1) * w.cfg.g; ++c) s += x[c];
    xsum[static_cast<size_t>(gi)] = s;
  }
  for (int64_t r = r0; r < r1; ++r) {
    float acc = 0.0f;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t set = r * groups + gi;
      float acc_g = 0.0f;
      if (fold) acc_g += half(w.alpha[static_cast<size_t>(set * q)]) * t.sum_folded(w, r, gi * cpg, (gi + 1) * cpg, kb);
      for (int i = 0; i < q && !fold; ++i) {
        const float s = p == Precision::kExact ? t.sum_f32(w, i, r, gi * cpg, (gi + 1) * cpg)
                                               : t.sum_fast(w, i, r, gi * cpg, (gi + 1) * cpg, kb);
        acc_g += half(w.alpha[static_cast<size_t>(set * q + i)]) * s;
      }
      if (w.cfg.has_offset) acc_g += half(w.offset[static_cast<size_t>(set)]) * xsum[static_cast<size_t>(gi)];
      acc += acc_g;
    }
    y[r] = acc;
  }
}

// Per-IC: for each block of g rows and each plane, x'_i[c] = α_i[block, c]·x[c] and its tables.
void gemm_per_ic(const format::BcqMatrix& w, Precision p, const float* x, float* y, int64_t r0, int64_t r1) {
  const int q = w.cfg.q;
  const int64_t kb = lut_block(w);
  const int64_t chunks = w.k / kMu;
  std::vector<Tables> t(static_cast<size_t>(q));
  std::vector<float> xs(static_cast<size_t>(w.k));
  for (int64_t blk = r0 / w.cfg.g; blk * w.cfg.g < r1; ++blk) {
    for (int i = 0; i < q; ++i) {
      for (int64_t c = 0; c < w.k; ++c) {
        xs[static_cast<size_t>(c)] = half(w.alpha[static_cast<size_t>((blk * w.k + c) * q + i)]) * x[c];
      }
      t[static_cast<size_t>(i)].build(xs.data(), w.k, kb, p);
    }
    float zdot = 0.0f;
    if (w.cfg.has_offset) {
      for (int64_t c = 0; c < w.k; ++c) zdot += half(w.offset[static_cast<size_t>(blk * w.k + c)]) * x[c];
    }
    const int64_t lo = std::max(r0, blk * w.cfg.g);
    const int64_t hi = std::min(r1, (blk + 1) * w.cfg.g);
    for (int64_t r = lo; r < hi; ++r) {
      float acc = 0.0f;
      for (int i = 0; i < q; ++i) {
        const Tables& ti = t[static_cast<size_t>(i)];
        acc += p == Precision::kExact ? ti.sum_f32(w, i, r, 0, chunks) : ti.sum_fast(w, i, r, 0, chunks, kb);
      }
      y[r] = acc + zdot;
    }
  }
}

void scalar_gemm(const PackedMatrix& pw, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const format::BcqMatrix& w = pw.source;
  const bool per_oc = w.cfg.orientation == format::Orientation::kPerOC;
  // Per-IC rows are split on block boundaries so every thread builds whole blocks' tables.
  const int64_t align = per_oc ? 1 : w.cfg.g;
  const bool fold = pw.uniform && pw.precision == Precision::kFast;
  pool.parallel_for(w.n, align, [&](int64_t r0, int64_t r1) {
    for (int64_t mm = 0; mm < m; ++mm) {
      if (per_oc) {
        gemm_per_oc(w, pw.precision, fold, x + mm * w.k, y + mm * w.n, r0, r1);
      } else {
        gemm_per_ic(w, pw.precision, x + mm * w.k, y + mm * w.n, r0, r1);
      }
    }
  });
}

void scalar_partials(const PackedMatrix& pw, const float* x, int32_t* out) {
  const format::BcqMatrix& w = pw.source;
  const int q = w.cfg.q;
  const int64_t kb = lut_block(w);
  const int64_t cpb = kb / kMu;
  const int64_t nb = w.k / kb;
  auto emit = [&](const Tables& t, int i, int64_t r) {
    for (int64_t b = 0; b < nb; ++b) out[(r * q + i) * nb + b] = t.sum_i8(w, i, r, b * cpb, (b + 1) * cpb);
  };
  if (w.cfg.orientation == format::Orientation::kPerOC) {
    Tables t;
    t.build(x, w.k, kb, Precision::kFast);
    for (int64_t r = 0; r < w.n; ++r) {
      for (int i = 0; i < q; ++i) emit(t, i, r);
    }
    return;
  }
  Tables t;
  std::vector<float> xs(static_cast<size_t>(w.k));
  for (int64_t blk = 0; blk < w.n / w.cfg.g; ++blk) {
    for (int i = 0; i < q; ++i) {
      for (int64_t c = 0; c < w.k; ++c) {
        xs[static_cast<size_t>(c)] = half(w.alpha[static_cast<size_t>((blk * w.k + c) * q + i)]) * x[c];
      }
      t.build(xs.data(), w.k, kb, Precision::kFast);
      for (int64_t r = blk * w.cfg.g; r < (blk + 1) * w.cfg.g; ++r) emit(t, i, r);
    }
  }
}

}  // namespace

Status lut_check(const format::BcqMatrix& w, Precision) {
  if (lut_block(w) == 0) {
    return Status::unsupported("LUT kernels need k to be a multiple of 32 (k=" + std::to_string(w.k) +
                               "); use the ref backend for this matrix");
  }
  return Status::ok();
}

const Backend& scalar_backend() {
  static const Backend kBackend{Isa::kScalar, scalar_available, lut_check, scalar_repack,
                                canonical_unpack, scalar_gemm,     scalar_partials};
  return kBackend;
}

}  // namespace lutq::kernels
