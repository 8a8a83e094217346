// XQuant (Tomar et al. 2025, arXiv 2508.10395) and XQuant-CL: the memory keeps each layer's
// normed input x (what the k/v projections saw) instead of K and V, quantized per token
// (GroupCodec, x_bits bits, one fp16 scale/min pair per group of up to 64 values), and rebuilds
// K and V for every cached position at each step through the layer's own k/v path
// (KvProjector: biases, k norm, RoPE).
//
// Grouped-query layers (2·kv_dim < n_embd) cache the latent c = x·U of rank r = 2·kv_dim
// (kv_basis.h) and rebuild [k|v] = ĉ·(W·U)ᵀ + bias; other layers cache x itself (U = I) and run
// the layer's own linears (the BCQ LUT kernels) on x̂. The per-layer basis is computed on the
// layer's first attend() and held by the memory (counted in bytes(), not per token).
//
// XQuant-CL stores, for a layer that is not an anchor (layer % cl_anchor != 0), the quantized
// difference d_l = c_l − ĉ_{l−1}·M_l from the previous layer's *reconstructed* latent mapped
// into this layer's basis (M_l = U_{l−1}ᵀ U_l; I when both keep x), and reconstructs
// ĉ_l = d̂_l + ĉ_{l−1}·M_l. Predicting from the reconstruction (closed loop) means each layer's
// error is its own quantization error, not a sum over the chain; the anchors bound how many
// layers a reconstruction walks. Error of one value (group_codec.h): |c − ĉ| <= step/2.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/dense/dense_gemm.h"
#include "model/memory/group_codec.h"
#include "model/memory/kinds.h"
#include "model/memory/kv_basis.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

constexpr int64_t kXGroup = 64;

struct XLayout {
  XLayout(const MemoryShape& s, const MemoryOptions& o, bool cl)
      : e(s.n_embd), kvd(s.n_head_kv * s.head_dim), low_rank(2 * kvd < e), r(low_rank ? 2 * kvd : e),
        codec(o.x_bits == 32 ? 8 : o.x_bits, fitting_group(r, kXGroup)), fp32(o.x_bits == 32),
        row_bytes(fp32 ? r * 4 : codec.row_bytes(r)),
        basis_floats(low_rank ? r * e + 2 * kvd * r + (cl ? r * r : 0) : 0) {}
  int64_t e, kvd;
  bool low_rank;
  int64_t r;
  GroupCodec codec;
  bool fp32;
  int64_t row_bytes;     // one cached row (position, layer)
  int64_t basis_floats;  // per layer: Uᵀ, W·U, and for CL M_lᵀ
};

// Where a row lives: (sequence, position).
using Site = std::pair<int32_t, int64_t>;

class XQuantMemory final : public StagedMemory {
 public:
  XQuantMemory(const MemoryShape& s, const MemoryOptions& o, bool cl)
      : StagedMemory(s), lay_(s, o, cl), cl_(cl), anchor_(o.cl_anchor),
        codes_(static_cast<size_t>(s.sequences * s.n_layer * s.capacity * lay_.row_bytes)),
        bases_(static_cast<size_t>(s.n_layer)), mix_(static_cast<size_t>(lay_.low_rank && cl ? s.n_layer : 0)),
        ready_(static_cast<size_t>(s.n_layer), false) {
    for (KvBasis& b : bases_) {
      if (!lay_.low_rank) continue;
      b.rank = lay_.r;
      b.ut.resize(static_cast<size_t>(lay_.r * lay_.e));
      b.w_u.resize(static_cast<size_t>(2 * lay_.kvd * lay_.r));
    }
    for (std::vector<float>& m : mix_) m.resize(static_cast<size_t>(lay_.r * lay_.r));
  }

  std::string_view kind() const override { return cl_ ? "xquant-cl" : "xquant"; }
  int64_t bytes() const override {
    return static_cast<int64_t>(codes_.size()) +
           shape().n_layer * lay_.basis_floats * static_cast<int64_t>(sizeof(float));
  }
  int64_t bytes_per_token() const override { return shape().n_layer * lay_.row_bytes; }

 protected:
  Status store(int64_t layer, const AttentionRows& in, OpIsa ops, ThreadPool& pool) override {
    if (Status st = prepare(layer, in, pool); !st) return st;
    const auto m = static_cast<int64_t>(in.rows.size());
    std::vector<float> c(static_cast<size_t>(m * lay_.r));
    if (lay_.low_rank) {
      kernels::dense_gemm({bases_[static_cast<size_t>(layer)].ut.data(), lay_.r, lay_.e}, in.x, m, c.data(), pool,
                          ops.avx2);
    } else {
      std::copy_n(in.x, m * lay_.e, c.data());
    }
    std::vector<Site> sites;
    for (const BatchRow& row : in.rows) sites.emplace_back(row.seq, row.pos);
    if (is_delta(layer)) {
      std::vector<float> pred(c.size());
      predict(layer, sites, pred.data(), ops, pool);
      for (size_t i = 0; i < c.size(); ++i) c[i] -= pred[i];
    }
    for (int64_t t = 0; t < m; ++t) encode(c.data() + t * lay_.r, row(sites[static_cast<size_t>(t)], layer));
    return Status::ok();
  }

  Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows& in, float* k, float* v, OpIsa ops,
              ThreadPool& pool) override {
    std::vector<Site> sites(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; ++p) sites[static_cast<size_t>(p)] = {seq, p};
    std::vector<float> c(static_cast<size_t>(n * lay_.r));
    reconstruct(layer, sites, c.data(), ops, pool);
    const int64_t kvd = lay_.kvd;
    if (lay_.low_rank) {
      std::vector<float> kv(static_cast<size_t>(n * 2 * kvd));
      kernels::dense_gemm({bases_[static_cast<size_t>(layer)].w_u.data(), 2 * kvd, lay_.r}, c.data(), n, kv.data(),
                          pool, ops.avx2);
      const std::span<const float> bk = in.kv->k_bias();
      const std::span<const float> bv = in.kv->v_bias();
      for (int64_t p = 0; p < n; ++p) {
        for (int64_t o = 0; o < kvd; ++o) {
          k[p * kvd + o] = kv[static_cast<size_t>(p * 2 * kvd + o)] + (bk.empty() ? 0.0f : bk[static_cast<size_t>(o)]);
          v[p * kvd + o] =
              kv[static_cast<size_t>(p * 2 * kvd + kvd + o)] + (bv.empty() ? 0.0f : bv[static_cast<size_t>(o)]);
        }
      }
    } else if (Status st = in.kv->project(c.data(), n, k, v, pool); !st) {
      return st;
    }
    in.kv->position_keys(k, n, rope_, 0);
    return Status::ok();
  }

 private:
  bool is_delta(int64_t layer) const { return cl_ && layer % anchor_ != 0; }
  uint8_t* row(const Site& at, int64_t layer) {
    const MemoryShape& s = shape();
    return codes_.data() + ((at.first * s.n_layer + layer) * s.capacity + at.second) * lay_.row_bytes;
  }
  void encode(const float* c, uint8_t* out) const {
    if (lay_.fp32) {
      std::memcpy(out, c, static_cast<size_t>(lay_.r) * sizeof(float));
    } else {
      lay_.codec.encode(c, lay_.r, out);
    }
  }
  void decode(const uint8_t* in, float* c) const {
    if (lay_.fp32) {
      std::memcpy(c, in, static_cast<size_t>(lay_.r) * sizeof(float));
    } else {
      lay_.codec.decode(in, lay_.r, c);
    }
  }

  // ĉ of `layer` at the sites: the decoded row, plus for a delta layer the prediction from below.
  void reconstruct(int64_t layer, const std::vector<Site>& sites, float* c, OpIsa ops, ThreadPool& pool) {
    const auto n = static_cast<int64_t>(sites.size());
    if (is_delta(layer)) predict(layer, sites, c, ops, pool);
    std::vector<float> d(static_cast<size_t>(lay_.r));
    for (int64_t t = 0; t < n; ++t) {
      float* ct = c + t * lay_.r;
      decode(row(sites[static_cast<size_t>(t)], layer), is_delta(layer) ? d.data() : ct);
      if (is_delta(layer)) {
        for (int64_t i = 0; i < lay_.r; ++i) ct[i] += d[static_cast<size_t>(i)];
      }
    }
  }

  // ĉ_{layer−1}·M_layer at the sites (layer − 1 >= 0 is stored for them).
  void predict(int64_t layer, const std::vector<Site>& sites, float* pred, OpIsa ops, ThreadPool& pool) {
    const auto n = static_cast<int64_t>(sites.size());
    if (!lay_.low_rank) {
      reconstruct(layer - 1, sites, pred, ops, pool);
      return;
    }
    std::vector<float> below(static_cast<size_t>(n * lay_.r));
    reconstruct(layer - 1, sites, below.data(), ops, pool);
    kernels::dense_gemm({mix_[static_cast<size_t>(layer)].data(), lay_.r, lay_.r}, below.data(), n, pred, pool,
                        ops.avx2);
  }

  // The layer's basis (and for CL the map from the layer below) on its first use; the RoPE table.
  Status prepare(int64_t layer, const AttentionRows& in, ThreadPool& pool) {
    if (in.kv == nullptr) return Status::invalid(std::string(kind()) + " memory: the attention block gave no k/v path");
    if (rope_.cos.empty()) rope_ = in.kv->rope_table(0, shape().capacity);
    if (ready_[static_cast<size_t>(layer)] || !lay_.low_rank) return Status::ok();
    if (is_delta(layer) && !ready_[static_cast<size_t>(layer - 1)]) {
      return Status::invalid("xquant-cl memory: layer " + std::to_string(layer) + " before layer " +
                             std::to_string(layer - 1));
    }
    Result<KvBasis> b = kv_basis(*in.kv, lay_.e, lay_.kvd, pool);
    if (!b) return b.status();
    bases_[static_cast<size_t>(layer)] = std::move(*b);
    if (is_delta(layer)) {
      // mix[j][i] = (U_{l−1}ᵀ U_l)[i][j]: pred = below · mixᵀ.
      const std::vector<float>& lo = bases_[static_cast<size_t>(layer - 1)].ut;
      const std::vector<float>& hi = bases_[static_cast<size_t>(layer)].ut;
      std::vector<float>& mix = mix_[static_cast<size_t>(layer)];
      for (int64_t j = 0; j < lay_.r; ++j) {
        for (int64_t i = 0; i < lay_.r; ++i) {
          double s = 0.0;
          for (int64_t x = 0; x < lay_.e; ++x) {
            s += static_cast<double>(hi[static_cast<size_t>(j * lay_.e + x)]) * lo[static_cast<size_t>(i * lay_.e + x)];
          }
          mix[static_cast<size_t>(j * lay_.r + i)] = static_cast<float>(s);
        }
      }
    }
    ready_[static_cast<size_t>(layer)] = true;
    return Status::ok();
  }

  XLayout lay_;
  bool cl_;
  int64_t anchor_;
  std::vector<uint8_t> codes_;             // [sequence][layer][position][row_bytes]
  std::vector<KvBasis> bases_;             // per layer (low rank only)
  std::vector<std::vector<float>> mix_;    // per layer, CL and low rank: M_lᵀ [r][r]
  std::vector<bool> ready_;
  RopeTable rope_;                         // positions 0..capacity−1
};

int64_t xq_bytes(const MemoryShape& s, const MemoryOptions& o, bool cl) {
  const XLayout lay(s, o, cl);
  return s.sequences * s.n_layer * s.capacity * lay.row_bytes + s.n_layer * lay.basis_floats * 4;
}

}  // namespace

Status xquant_memory_check(const MemoryShape& s, const MemoryOptions& o) {
  const XLayout lay(s, o, false);
  if (!lay.fp32 && lay.codec.group() * o.x_bits % 8 != 0) {
    return Status::unsupported("xquant: " + std::to_string(o.x_bits) + "-bit codes of the cached width " +
                               std::to_string(lay.r) + " (no group of whole bytes divides it); try 2, 4 or 8 bits");
  }
  return Status::ok();
}

int64_t xquant_memory_bytes(const MemoryShape& s, const MemoryOptions& o) { return xq_bytes(s, o, false); }
std::unique_ptr<Memory> make_xquant_memory(const MemoryShape& s, const MemoryOptions& o) {
  return std::make_unique<XQuantMemory>(s, o, false);
}

int64_t xquant_cl_memory_bytes(const MemoryShape& s, const MemoryOptions& o) { return xq_bytes(s, o, true); }
std::unique_ptr<Memory> make_xquant_cl_memory(const MemoryShape& s, const MemoryOptions& o) {
  return std::make_unique<XQuantMemory>(s, o, true);
}

}  // namespace lutq::model
