// QMoE matrices as the BCQ matrices they equal, for the LUT kernels at larger m (qmoe_gemm.h).
// A ternary row s·t, t ∈ {−1, 0, +1}^k, is BCQ with q = 2, one group per row and no offset:
//   s·(pos − neg) = s/2·(2·pos − 1) + s/2·(1 − 2·neg),
// so plane 0 holds the +1 symbols, plane 1 the complement of the −1 symbols, and α_0 = α_1 =
// fp16(s/2) (exact unless s/2 is a subnormal that drops its last bit).
#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/linear.h"
#include "kernels/qmoe/qmoe_gemm.h"

namespace lutq::kernels {
namespace {

static_assert(std::endian::native == std::endian::little, "bit strings are copied as little-endian words");

// Row r's +1 and −1 symbols as bit strings along k (bit c of word c / 64), walking its codewords.
void decode_row(const QmoeWeights& w, int64_t r, std::vector<uint64_t>& pos, std::vector<uint64_t>& neg) {
  std::fill(pos.begin(), pos.end(), 0);
  std::fill(neg.begin(), neg.end(), 0);
  const format::QmoeMatrix& q = *w.m;
  const uint64_t* masks = w.table->masks.data();
  const uint8_t* len = w.table->len.data();
  int64_t c = 0;
  for (uint32_t i = q.row_offset[static_cast<size_t>(r)]; i < q.row_offset[static_cast<size_t>(r + 1)]; ++i) {
    const uint16_t e = q.codes[i];
    const uint64_t p = masks[e] & 0xFFFFFFFFu, m = masks[e] >> 32;
    const auto word = static_cast<size_t>(c / 64);
    const int shift = static_cast<int>(c % 64);
    pos[word] |= p << shift;
    neg[word] |= m << shift;
    if (shift > 32) {  // the run spills into the next word (the vectors hold one word of slack)
      pos[word + 1] |= p >> (64 - shift);
      neg[word + 1] |= m >> (64 - shift);
    }
    c += len[e];
  }
}

}  // namespace

format::BcqMatrix qmoe_as_bcq(const QmoeWeights& w, ThreadPool* pool) {
  format::BcqMatrix b;
  b.n = w.n();
  b.k = w.k();
  b.cfg.q = 2;
  b.cfg.g = b.k;
  b.cfg.orientation = format::Orientation::kPerOC;
  b.cfg.has_offset = false;
  const int64_t rb = b.row_bytes(), words = (b.k + 63) / 64;
  b.bits.assign(static_cast<size_t>(2 * b.n * rb), 0);
  b.alpha.resize(static_cast<size_t>(2 * b.n));
  auto rows = [&](int64_t r0, int64_t r1) {  // each row writes only its own bytes and α
    std::vector<uint64_t> pos(static_cast<size_t>(words + 1)), neg(pos.size());
    for (int64_t r = r0; r < r1; ++r) {
      decode_row(w, r, pos, neg);
      for (int64_t j = 0; j < words; ++j) {
        const int64_t valid = std::min<int64_t>(64, b.k - 64 * j);
        const uint64_t keep = valid == 64 ? ~uint64_t{0} : (uint64_t{1} << valid) - 1;
        neg[static_cast<size_t>(j)] = ~neg[static_cast<size_t>(j)] & keep;  // plane 1: not −1
      }
      std::memcpy(b.bits.data() + r * rb, pos.data(), static_cast<size_t>(rb));  // little-endian words
      std::memcpy(b.bits.data() + (b.n + r) * rb, neg.data(), static_cast<size_t>(rb));
      const uint16_t half = fp32_to_fp16(0.5f * fp16_to_fp32(w.m->scale[static_cast<size_t>(r)]));
      b.alpha[static_cast<size_t>(2 * r)] = half;
      b.alpha[static_cast<size_t>(2 * r + 1)] = half;
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(b.n, 8, rows);
  } else {
    rows(0, b.n);
  }
  return b;
}

Result<bool> qmoe_gemm_lut(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa,
                           const CpuFeatures* cpu) {
  Result<BcqLinear> lin = BcqLinear::create(qmoe_as_bcq(w, &pool), isa, Precision::kExact, GemmPath::kLut, cpu);
  if (!lin) return false;  // a shape this backend's LUT layout does not take
  if (Status s = lin->forward(x, m, y, pool); !s) return s;
  return true;
}

}  // namespace lutq::kernels
