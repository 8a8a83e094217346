#include "kernels/linear.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <vector>

namespace lutq::kernels {

namespace {

Result<GemmPath> path_from_env() {
  // Unset: the LUT path. The int8 path keeps a second copy of the weights (AVX-512: int8 codes
  // and level tables, ~5.25-6.5 bits per weight; avx2, uniform grids: nibble codes, ~4.5) for
  // 1.2-2x faster prefill, so it is opt-in (auto: the policy; int8: forced).
  const char* env = std::getenv("LUTQ_GEMM_PATH");
  if (env == nullptr || *env == '\0') return GemmPath::kLut;
  const std::string_view v(env);
  if (v == "auto") return GemmPath::kAuto;
  if (v == "lut") return GemmPath::kLut;
  if (v == "int8") return GemmPath::kInt8Gemm;
  return Status::invalid("LUTQ_GEMM_PATH: unknown path '" + std::string(v) + "': expected auto, lut or int8");
}

// LUTQ_AMX=0 keeps the int8 path on its AVX-512 kernel where AMX is there (for comparisons).
bool amx_allowed() {
  const char* env = std::getenv("LUTQ_AMX");
  return env == nullptr || std::string_view(env) != "0";
}

}  // namespace

Result<BcqLinear> BcqLinear::create(const format::BcqMatrix& w, Isa isa, Precision precision,
                                    std::optional<GemmPath> path, const CpuFeatures* known_cpu) {
  if (!path) {
    Result<GemmPath> env = path_from_env();
    if (!env) return env.status();
    path = *env;
  }
  const Backend& be = backend(isa);
  if (Status s = be.check(w, precision); !s) {
    return Status(s.code(), std::string(isa_name(isa)) + " backend: " + s.message());
  }
  const CpuFeatures cpu = known_cpu != nullptr ? *known_cpu : detect_cpu();
  if (use_byte_path(w, isa, precision, cpu)) return create_bytes(w, isa, precision, cpu);
  PackedMatrix packed = be.repack(w, precision);
  if (be.place != nullptr) {
    if (Status s = be.place(packed); !s) return Status(s.code(), std::string(isa_name(isa)) + " backend: " + s.message());
  }
  BcqLinear out(std::move(packed));
  if (*path != GemmPath::kAuto) out.forced_ = path;
  // Packed for the int8 path where it is forced, or where the policy takes it for some m (a
  // matrix it never takes, e.g. q <= 2, does not pay the memory).
  const bool fast_oc = precision == Precision::kFast && bcq_int8_supported(w);  // per-OC, q <= 4
  const bool on_avx2 = fast_oc && isa == Isa::kAvx2 && bcq_int8_avx2_available(cpu);
  const bool int8_possible = (fast_oc && isa == Isa::kAvx512 && bcq_int8_avx512_available(cpu)) ||
                             (on_avx2 && bcq_int8_avx2_supported(w.cfg.g));
  const bool amx = amx_allowed() && bcq_int8_amx_available(cpu);
  const bool uniform = on_avx2 && bcq_uniform_grid(w);
  const bool wanted = *path == GemmPath::kInt8Gemm ||
                      (*path == GemmPath::kAuto && choose_path(std::numeric_limits<int64_t>::max(), w.n, w.k, w.cfg.q,
                                                               w.cfg.g, w.cfg.orientation, isa, precision, amx,
                                                               uniform) == GemmPath::kInt8Gemm);
  if (uniform && wanted) {
    out.uniform_ = std::make_shared<const BcqBytesPacked>(pack_bcq_bytes(w));
  } else if (int8_possible && wanted) {
    // Row codes where the AMX or the AVX2 kernel runs this matrix, plane masks (quads) for the
    // AVX-512 one.
    const bool rows = isa == Isa::kAvx2 || (amx && bcq_int8_amx_supported(w.cfg.g));
    out.int8_ = std::make_shared<const BcqInt8Packed>(pack_bcq_int8(w, rows ? Int8Codes::kRows : Int8Codes::kQuads));
    out.int8_kernel_ = best_int8_kernel(cpu, *out.int8_, amx && isa == Isa::kAvx512);
  }
  return out;
}

BcqLinear BcqLinear::create_bytes(const format::BcqMatrix& w, Isa isa, Precision precision, const CpuFeatures& cpu) {
  PackedMatrix meta;
  meta.isa = isa;
  meta.precision = precision;
  meta.source.n = w.n;
  meta.source.k = w.k;
  meta.source.cfg = w.cfg;
  BcqLinear out(std::move(meta));
  out.bytes_ = std::make_shared<const BcqBytesPacked>(pack_bcq_bytes(w));
  out.byte_kernel_ = byte_kernel_for(isa, precision, cpu);
  out.forced_ = GemmPath::kLut;
  return out;
}

format::BcqMatrix BcqLinear::unpack() const {
  if (bytes_) return unpack_bcq_bytes(*bytes_);
  return backend(packed_.isa).unpack(packed_);
}

GemmPath BcqLinear::path_for(int64_t m) const {
  if (!int8_ && !uniform_) return GemmPath::kLut;
  if (forced_) return *forced_;
  const format::BcqConfig& c = packed_.source.cfg;
  return choose_path(m, n(), k(), c.q, c.g, c.orientation, packed_.isa, packed_.precision,
                     int8_kernel_ == Int8Kernel::kAmx, uniform_ != nullptr);
}

Status BcqLinear::forward(const float* x, int64_t m, float* y, ThreadPool& pool) const {
  if (m < 1) return Status::invalid("forward: m must be at least 1 (got " + std::to_string(m) + ")");
  if (x == nullptr || y == nullptr) return Status::invalid("forward: null activation or output pointer");
  if (bytes_) {
    bcq_bytes_gemm(*bytes_, x, m, y, pool, byte_kernel_);
    return Status::ok();
  }
  if (path_for(m) == GemmPath::kInt8Gemm) {
    if (uniform_) {
      bcq_bytes_gemm(*uniform_, x, m, y, pool, ByteKernel::kAvx2);
    } else {
      bcq_int8_gemm(*int8_, x, m, y, pool, int8_kernel_);
    }
    return Status::ok();
  }
  const Backend& be = backend(packed_.isa);
  for (int64_t m0 = 0; m0 < m; m0 += kMaxM) {
    const int64_t mt = std::min(kMaxM, m - m0);
    if (be.gemm_status != nullptr) {
      if (Status s = be.gemm_status(packed_, x + m0 * k(), mt, y + m0 * n()); !s) return s;
    } else {
      be.gemm(packed_, x + m0 * k(), mt, y + m0 * n(), pool);
    }
  }
  return Status::ok();
}

bool share_oc_tables(const PackedMatrix& a, const PackedMatrix& b) {
  using format::Orientation;
  return a.isa == b.isa && a.precision == b.precision && a.source.cfg.orientation == Orientation::kPerOC &&
         b.source.cfg.orientation == Orientation::kPerOC && a.source.k == b.source.k && a.source.cfg.g == b.source.cfg.g;
}

Status BcqLinear::forward_shared(std::span<const BcqLinear* const> lins, const float* x, int64_t m,
                                 std::span<float* const> ys, ThreadPool& pool) {
  if (lins.size() != ys.size()) return Status::invalid("forward_shared: one output per layer is needed");
  if (lins.empty()) return Status::ok();
  const Backend& be = backend(lins[0]->isa());
  bool shared = be.gemm_shared != nullptr && m >= 1 && x != nullptr;
  for (size_t j = 0; shared && j < lins.size(); ++j) {
    const BcqLinear& l = *lins[j];
    shared = !l.bytes_ && l.path_for(m) == GemmPath::kLut && ys[j] != nullptr &&
             share_oc_tables(lins[0]->packed_, l.packed_);
  }
  if (!shared) {
    for (size_t j = 0; j < lins.size(); ++j) {
      if (Status s = lins[j]->forward(x, m, ys[j], pool); !s) return s;
    }
    return Status::ok();
  }
  std::vector<const PackedMatrix*> ws;
  for (const BcqLinear* l : lins) ws.push_back(&l->packed_);
  std::vector<float*> out(ys.size());
  const int64_t k = lins[0]->k();
  for (int64_t m0 = 0; m0 < m; m0 += kMaxM) {
    const int64_t mt = std::min(kMaxM, m - m0);
    for (size_t j = 0; j < ys.size(); ++j) out[j] = ys[j] + m0 * lins[j]->n();
    be.gemm_shared(ws, x + m0 * k, mt, out, pool);
  }
  return Status::ok();
}

int64_t BcqLinear::weight_bytes() const {
  if (bytes_) return bytes_->bytes();
  if (packed_.data.size() > 0) return static_cast<int64_t>(packed_.data.size());
  return packed_.source.storage_bytes();
}

}  // namespace lutq::kernels
