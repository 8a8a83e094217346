// QMoE kernel: tables, validation, the scalar spec and the dispatch over ISAs and activation tiles.
#include "kernels/qmoe/qmoe_gemm.h"

#include <algorithm>
#include <string>

#include "core/fp16.h"
#include "kernels/qmoe/qmoe_internal.h"

namespace lutq::kernels {
namespace {

constexpr int64_t kMaxTile = 4;  // activation rows sharing each decoded codeword
constexpr int64_t kRowAlign = 8;  // rows per thread range: a multiple of this

}  // namespace

namespace qmoe {

void rows_scalar(const QmoeWeights& w, const float* xp, int64_t kp, int64_t m, float* y, int64_t r0, int64_t r1) {
  const format::QmoeMatrix& q = *w.m;
  const uint64_t* masks = w.table->masks.data();
  const uint8_t* len = w.table->len.data();
  const int64_t n = q.n;
  for (int64_t r = r0; r < r1; ++r) {
    float pos[kMaxTile] = {};
    float neg[kMaxTile] = {};
    int64_t c = 0;
    for (uint32_t i = q.row_offset[static_cast<size_t>(r)]; i < q.row_offset[static_cast<size_t>(r + 1)]; ++i) {
      const uint16_t e = q.codes[i];
      const uint64_t mk = masks[e];
      for (int j = 0; j < len[e]; ++j) {
        const bool p = (mk >> j) & 1u;
        const bool ng = (mk >> (32 + j)) & 1u;
        if (!p && !ng) continue;
        for (int64_t t = 0; t < m; ++t) {
          const float x = xp[t * kp + c + j];
          if (p) {
            pos[t] += x;
          } else {
            neg[t] += x;
          }
        }
      }
      c += len[e];
    }
    for (int64_t t = 0; t < m; ++t) y[t * n + r] = w.scale[static_cast<size_t>(r)] * (pos[t] - neg[t]);
  }
}

}  // namespace qmoe

Result<std::shared_ptr<const QmoeTable>> make_qmoe_table(std::shared_ptr<const format::QmoeDictionary> dict) {
  if (dict == nullptr) return Status::invalid("qmoe table: no dictionary");
  if (Status s = format::validate(*dict); !s) return s;
  auto t = std::make_shared<QmoeTable>();
  t->len = dict->len;
  t->masks.resize(dict->len.size());
  for (size_t e = 0; e < dict->len.size(); ++e) t->masks[e] = static_cast<uint64_t>(dict->neg[e]) << 32 | dict->pos[e];
  t->dict = std::move(dict);
  return std::shared_ptr<const QmoeTable>(std::move(t));
}

int64_t QmoeWeights::weight_bytes() const {
  return static_cast<int64_t>(m->codes.size() * sizeof(uint16_t) + m->row_offset.size() * sizeof(uint32_t) +
                              scale.size() * sizeof(float));
}

Result<QmoeWeights> make_qmoe_weights(std::shared_ptr<const format::QmoeMatrix> m, std::shared_ptr<const QmoeTable> table) {
  if (m == nullptr) return Status::invalid("qmoe weights: no matrix");
  // Precondition (qmoe_gemm.h): m is validated where it was made; only the cheap checks here.
  if (m->dict == nullptr) return Status::invalid("qmoe weights: the matrix has no dictionary");
  if (m->n < 1 || static_cast<int64_t>(m->scale.size()) != m->n) {
    return Status::invalid("qmoe weights: " + std::to_string(m->scale.size()) + " scales for " +
                           std::to_string(m->n) + " rows");
  }
#ifndef NDEBUG
  if (Status s = format::validate(*m); !s) return s;
#endif
  if (table == nullptr) {
    Result<std::shared_ptr<const QmoeTable>> made = make_qmoe_table(m->dict);
    if (!made) return made.status();
    table = std::move(*made);
  } else if (table->dict != m->dict) {
    return Status::invalid("qmoe weights: the table belongs to another dictionary");
  }
  QmoeWeights w;
  w.scale.resize(static_cast<size_t>(m->n));
  for (int64_t r = 0; r < m->n; ++r) w.scale[static_cast<size_t>(r)] = fp16_to_fp32(m->scale[static_cast<size_t>(r)]);
  w.m = std::move(m);
  w.table = std::move(table);
  return w;
}

bool qmoe_available(Isa isa, const CpuFeatures& cpu) {
  switch (isa) {
    case Isa::kRef:
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return cpu.avx2;
    case Isa::kAvx512:
      return cpu.avx512;
    case Isa::kCuda:
      return false;
  }
  return false;
}

Status qmoe_gemm(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa) {
  return qmoe_gemm(w, x, m, y, pool, isa, detect_cpu());
}

Status qmoe_gemm(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa,
                 const CpuFeatures& cpu) {
  if (m < 1) return Status::invalid("qmoe gemm: m must be at least 1 (got " + std::to_string(m) + ")");
  if (!qmoe_available(isa, cpu)) {
    return Status::unsupported(std::string("qmoe gemm: the ") + isa_name(isa) + " kernel does not run on this CPU");
  }
  if (m >= kQmoeLutFromRows && (isa == Isa::kAvx512 || isa == Isa::kAvx2)) {
    Result<bool> done = qmoe_gemm_lut(w, x, m, y, pool, isa, &cpu);
    if (!done) return done.status();
    if (*done) return Status::ok();
  }
  const qmoe::RowsFn rows = isa == Isa::kAvx512 ? qmoe::rows_avx512 : isa == Isa::kAvx2 ? qmoe::rows_avx2 : qmoe::rows_scalar;
  const int64_t k = w.k();
  const int64_t n = w.n();
  const int64_t kp = qmoe::padded_k(k);
  std::vector<float> xp(static_cast<size_t>(std::min(m, kMaxTile) * kp), 0.0f);
  for (int64_t t0 = 0; t0 < m; t0 += kMaxTile) {
    const int64_t tile = std::min(kMaxTile, m - t0);
    for (int64_t t = 0; t < tile; ++t) std::copy(x + (t0 + t) * k, x + (t0 + t + 1) * k, xp.begin() + t * kp);
    float* yt = y + t0 * n;
    pool.parallel_for(n, kRowAlign, [&](int64_t begin, int64_t end) { rows(w, xp.data(), kp, tile, yt, begin, end); });
  }
  return Status::ok();
}

}  // namespace lutq::kernels
