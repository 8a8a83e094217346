// LLM.int8() GEMM: weight quantization, per-call outlier detection and per-token activation
// quantization, and the row loop over the pool (see int8_gemm.h).
#include "kernels/int8/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/fp16.h"

namespace lutq::kernels {
namespace int8_detail {

int32_t dot_ref(const int16_t* a, const int8_t* b, int64_t k) {
  int32_t total = 0;
  for (int64_t c = 0; c < k; ++c) total += static_cast<int32_t>(a[c]) * b[c];
  return total;
}

}  // namespace int8_detail

namespace {
constexpr int64_t kMaxK = std::numeric_limits<int32_t>::max() / (128 * 127);  // |xq| <= 128
constexpr int64_t kMaxVnniK = std::numeric_limits<int32_t>::max() / (255 * 128);  // u <= 255
}  // namespace

const char* int8_isa_name(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::kScalar: return "scalar";
    case Int8Isa::kAvx2: return "avx2";
    case Int8Isa::kAvxVnni: return "avx-vnni";
    case Int8Isa::kAvx512Vnni: return "avx512-vnni";
  }
  return "?";
}

std::vector<Int8Isa> int8_isas(const CpuFeatures& cpu) {
  std::vector<Int8Isa> out{Int8Isa::kScalar};
  if (!cpu.avx2) return out;
  out.push_back(Int8Isa::kAvx2);
  if (cpu.avx_vnni) out.push_back(Int8Isa::kAvxVnni);
  if (cpu.avx512 && cpu.avx512_vnni) out.push_back(Int8Isa::kAvx512Vnni);
  return out;
}

Result<Int8Weights> quantize_int8(const float* w, int64_t n, int64_t k, bool keep_fp16) {
  if (n < 1 || k < 1 || k > kMaxK) {
    return Status::invalid("int8: bad shape " + std::to_string(n) + "x" + std::to_string(k));
  }
  if (w == nullptr) return Status::invalid("int8: null weights");
  Int8Weights out;
  out.n = n;
  out.k = k;
  out.q.resize(static_cast<size_t>(n * k));
  out.scale.resize(static_cast<size_t>(n));
  out.row_sum.assign(static_cast<size_t>(n), 0);
  if (keep_fp16) out.fp16.resize(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) {
      const float v = w[r * k + c];
      if (!std::isfinite(v)) {
        return Status::invalid("int8: weight at row " + std::to_string(r) + ", column " + std::to_string(c) +
                               " is not finite");
      }
      amax = std::max(amax, std::fabs(v));
    }
    const float s = amax / 127.0f;
    out.scale[static_cast<size_t>(r)] = s;
    for (int64_t c = 0; c < k; ++c) {
      const float v = s > 0.0f ? std::nearbyint(w[r * k + c] / s) : 0.0f;
      out.q[static_cast<size_t>(r * k + c)] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
      out.row_sum[static_cast<size_t>(r)] += out.q[static_cast<size_t>(r * k + c)];
      if (keep_fp16) out.fp16[static_cast<size_t>(r * k + c)] = fp32_to_fp16(w[r * k + c]);
    }
  }
  return out;
}

Result<Int8Weights> int8_from_codes(int64_t n, int64_t k, std::vector<int8_t> q, std::vector<float> scale,
                                    std::vector<uint16_t> fp16) {
  if (n < 1 || k < 1 || k > kMaxK) return Status::invalid("int8: bad shape " + std::to_string(n) + "x" + std::to_string(k));
  const auto nk = static_cast<size_t>(n * k);
  if (q.size() != nk || scale.size() != static_cast<size_t>(n) || (!fp16.empty() && fp16.size() != nk)) {
    return Status::invalid("int8: buffer sizes do not match " + std::to_string(n) + "x" + std::to_string(k));
  }
  Int8Weights out;
  out.n = n;
  out.k = k;
  out.row_sum.assign(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; ++r) {
    const float s = scale[static_cast<size_t>(r)];
    if (!std::isfinite(s) || s < 0.0f) return Status::invalid("int8: scale of row " + std::to_string(r) + " is invalid");
    for (int64_t c = 0; c < k; ++c) {
      const int8_t v = q[static_cast<size_t>(r * k + c)];
      if (v < -127) return Status::invalid("int8: code -128 in row " + std::to_string(r));
      out.row_sum[static_cast<size_t>(r)] += v;
    }
  }
  out.q = std::move(q);
  out.scale = std::move(scale);
  out.fp16 = std::move(fp16);
  return out;
}

Status int8_gemm(const Int8Weights& w, const float* x, int64_t m, float* y, const Int8Options& opt, ThreadPool& pool,
                 Int8Isa isa) {
  const int64_t k = w.k;
  if (m < 1) return Status::invalid("int8 forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("int8 forward: null activation or output pointer");
  if (!(opt.threshold > 0.0f)) return Status::invalid("int8 forward: outlier threshold must be > 0");
  // Outlier columns: any row at or above the threshold.
  std::vector<uint8_t> outlier(static_cast<size_t>(k), 0);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t c = 0; c < k; ++c) {
      const float v = x[t * k + c];
      if (!std::isfinite(v)) {
        return Status::invalid("int8 forward: activation at row " + std::to_string(t) + ", column " +
                               std::to_string(c) + " is not finite");
      }
      if (std::fabs(v) >= opt.threshold) outlier[static_cast<size_t>(c)] = 1;
    }
  }
  std::vector<int64_t> out_cols;
  for (int64_t c = 0; c < k; ++c) {
    if (outlier[static_cast<size_t>(c)]) out_cols.push_back(c);
  }
  // Per-token quantization of the regular columns. Absmax: xq = round(x / s), s = amax / 127, and
  // outlier columns get 0. Zero point: x ≈ s·(xq − z) with s = (max − min) / 255 and
  // z = −128 − round(min / s); outlier columns get xq = z, so they add nothing to Σ(xq − z)·q.
  std::vector<int16_t> xq(static_cast<size_t>(m * k));
  std::vector<float> xs(static_cast<size_t>(m));
  std::vector<int32_t> xz(static_cast<size_t>(m), 0);
  for (int64_t t = 0; t < m; ++t) {
    float lo = 0.0f;
    float hi = 0.0f;
    for (int64_t c = 0; c < k; ++c) {
      if (outlier[static_cast<size_t>(c)]) continue;
      lo = std::min(lo, x[t * k + c]);
      hi = std::max(hi, x[t * k + c]);
    }
    const float s = opt.zeropoint ? (hi - lo) / 255.0f : std::max(hi, -lo) / 127.0f;
    const float z = opt.zeropoint && s > 0.0f ? -128.0f - std::nearbyint(lo / s) : 0.0f;
    const float qmin = opt.zeropoint ? -128.0f : -127.0f;
    xs[static_cast<size_t>(t)] = s;
    xz[static_cast<size_t>(t)] = static_cast<int32_t>(z);
    for (int64_t c = 0; c < k; ++c) {
      const float v = outlier[static_cast<size_t>(c)] || s == 0.0f ? z : std::nearbyint(x[t * k + c] / s) + z;
      xq[static_cast<size_t>(t * k + c)] = static_cast<int16_t>(std::clamp(v, qmin, 127.0f));
    }
  }
  if ((isa == Int8Isa::kAvxVnni || isa == Int8Isa::kAvx512Vnni) && k > kMaxVnniK) isa = Int8Isa::kAvx2;
  const bool vnni = isa == Int8Isa::kAvxVnni || isa == Int8Isa::kAvx512Vnni;
  // VNNI multiplies unsigned activations: u = xq + 128, Σ u·q = Σ xq·q + 128·Σq.
  std::vector<uint8_t> xu;
  if (vnni) {
    xu.resize(xq.size());
    for (size_t i = 0; i < xq.size(); ++i) xu[i] = static_cast<uint8_t>(xq[i] + 128);
  }
  const auto dot = isa == Int8Isa::kScalar ? int8_detail::dot_ref : int8_detail::dot_avx2;
  const auto dot_u8 = isa == Int8Isa::kAvx512Vnni ? int8_detail::dot_u8_avx512vnni : int8_detail::dot_u8_avxvnni;
  const int32_t shift = vnni ? 128 : 0;
  pool.parallel_for(w.n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int8_t* wr = w.q.data() + r * k;
      const float sw = w.scale[static_cast<size_t>(r)];
      const uint16_t* wh = w.fp16.empty() ? nullptr : w.fp16.data() + r * k;
      for (int64_t t = 0; t < m; ++t) {
        // |Σ xq·q| <= k·128·127 and |(128 + z)·row_sum| <= 383·k·127: int64 for the correction.
        const int32_t sum = vnni ? dot_u8(xu.data() + t * k, wr, k) : dot(xq.data() + t * k, wr, k);
        const int64_t acc = static_cast<int64_t>(sum) - static_cast<int64_t>(xz[static_cast<size_t>(t)] + shift) *
                                                            w.row_sum[static_cast<size_t>(r)];
        float v = static_cast<float>(acc) * (xs[static_cast<size_t>(t)] * sw);
        float extra = 0.0f;
        for (int64_t c : out_cols) {
          const float wv = wh != nullptr ? fp16_to_fp32(wh[c]) : static_cast<float>(wr[c]) * sw;
          extra += x[t * k + c] * wv;
        }
        y[t * w.n + r] = v + extra;
      }
    }
  });
  return Status::ok();
}

}  // namespace lutq::kernels
