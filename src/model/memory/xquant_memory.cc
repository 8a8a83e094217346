// XQuant (Tomar et al. 2025, arXiv 2508.10395) and XQuant-CL: the memory keeps each layer's
// normed input x (what the k/v projections saw) instead of K and V, quantized, and rebuilds K and
// V for every cached position at each step through the layer's own k/v path (KvProjector:
// biases, k norm, RoPE).
//
// Grouped-query layers (2·kv_dim < n_embd) cache the latent c = x·U of rank r = 2·kv_dim
// (kv_basis.h) and rebuild [k|v] = ĉ·(W·U)ᵀ + bias; other layers cache x itself (U = I) and run
// the layer's own linears (the BCQ LUT kernels) on x̂. The per-layer basis is computed on the
// layer's first attend() and held by the memory (counted in bytes(), not per token).
//
// Quantization, KIVI-style along tokens: x (or c) has outlier channels (a few features far
// larger than the rest, in every token), so each channel is quantized on its own over groups of
// kGroup consecutive tokens (GroupCodec, x_bits bits, one fp16 scale/min pair per channel and
// group); the tokens of the newest, incomplete group stay in an fp32 window until it completes.
// (Per-token groups of 64 channels, measured first, cost +4.1 % PPL at 4 bits on SmolLM2 against
// +0.97 % for q4: the outlier channels set every group's step; docs/memory.md.)
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

#include <cblas.h>

#include "kernels/dense/dense_gemm.h"
#include "model/memory/kinds.h"
#include "model/memory/kv_basis.h"
#include "model/memory/latent_store.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

constexpr int64_t kGroup = 64;  // positions per (channel, group) scale

struct XLayout {
  XLayout(const MemoryShape& s, bool cl)
      : e(s.n_embd), kvd(s.n_head_kv * s.head_dim), low_rank(2 * kvd < e), r(low_rank ? 2 * kvd : e),
        basis_floats(low_rank ? r * e + 2 * kvd * r + (cl ? r * r : 0) : 0) {}
  int64_t e, kvd;
  bool low_rank;
  int64_t r;             // values cached per position and layer
  int64_t basis_floats;  // per layer: Uᵀ, W·U, and for CL M_lᵀ
};

class XQuantMemory final : public StagedMemory {
 public:
  XQuantMemory(const MemoryShape& s, const MemoryOptions& o, bool cl)
      : StagedMemory(s), lay_(s, cl), cl_(cl), anchor_(o.cl_anchor),
        store_(s.sequences * s.n_layer, s.capacity, lay_.r, o.x_bits, kGroup),
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
    return store_.bytes() + shape().n_layer * lay_.basis_floats * static_cast<int64_t>(sizeof(float));
  }
  int64_t bytes_per_token() const override { return shape().n_layer * store_.bytes_per_position(); }

 protected:
  Status store(int64_t layer, const AttentionRows& in, OpIsa ops, ThreadPool& pool) override {
    if (Status st = prepare(layer, in, pool); !st) return st;
    if (chain_.layer >= layer) chain_.layer = -1;  // its rows may change now
    const auto m = static_cast<int64_t>(in.rows.size());
    std::vector<float> c(static_cast<size_t>(m * lay_.r));
    if (lay_.low_rank) {
      kernels::dense_gemm({bases_[static_cast<size_t>(layer)].ut.data(), lay_.r, lay_.e}, in.x, m, c.data(), pool,
                          ops.avx2);
    } else {
      std::copy_n(in.x, m * lay_.e, c.data());
    }
    // A sequence's rows in a batch have consecutive positions (Model::check_batch), in row order.
    std::vector<bool> done(static_cast<size_t>(m), false);
    std::vector<float> pred;
    for (int64_t t0 = 0; t0 < m; ++t0) {
      if (done[static_cast<size_t>(t0)]) continue;
      const BatchRow& head = in.rows[static_cast<size_t>(t0)];
      std::vector<int64_t> rows;
      for (int64_t t = t0; t < m; ++t) {
        if (in.rows[static_cast<size_t>(t)].seq != head.seq) continue;
        rows.push_back(t);
        done[static_cast<size_t>(t)] = true;
      }
      const auto count = static_cast<int64_t>(rows.size());
      if (is_delta(layer)) {
        pred.resize(static_cast<size_t>(count * lay_.r));
        predict(layer, head.seq, head.pos, count, pred.data(), ops, pool);
      }
      for (int64_t i = 0; i < count; ++i) {
        float* ct = c.data() + rows[static_cast<size_t>(i)] * lay_.r;
        if (is_delta(layer)) {
          for (int64_t j = 0; j < lay_.r; ++j) ct[j] -= pred[static_cast<size_t>(i * lay_.r + j)];
        }
        store_.put(slot(head.seq, layer), head.pos + i, ct);
      }
    }
    return Status::ok();
  }

  Status load(int64_t layer, int32_t seq, int64_t n, const AttentionRows& in, float* k, float* v, OpIsa ops,
              ThreadPool& pool) override {
    std::vector<float> c(static_cast<size_t>(n * lay_.r));
    reconstruct(layer, seq, 0, n, c.data(), ops, pool);
    if (cl_) chain_ = {layer, seq, n, c};  // the next layer's prediction starts from it
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
  int64_t slot(int32_t seq, int64_t layer) const { return seq * shape().n_layer + layer; }

  // ĉ of `layer` at positions first..first+count−1 of seq: the stored rows, plus for a delta
  // layer the prediction from the layer below.
  void reconstruct(int64_t layer, int32_t seq, int64_t first, int64_t count, float* c, OpIsa ops, ThreadPool& pool) {
    if (first == 0 && chain_.layer == layer && chain_.seq == seq && chain_.n == count) {
      std::copy(chain_.c.begin(), chain_.c.end(), c);
      return;
    }
    if (!is_delta(layer)) {
      store_.get(slot(seq, layer), first, count, c, pool);
      return;
    }
    predict(layer, seq, first, count, c, ops, pool);
    std::vector<float> d(static_cast<size_t>(count * lay_.r));
    store_.get(slot(seq, layer), first, count, d.data(), pool);
    for (size_t i = 0; i < d.size(); ++i) c[i] += d[i];
  }

  // ĉ_{layer−1}·M_layer at those positions (layer − 1 >= 0 holds them).
  void predict(int64_t layer, int32_t seq, int64_t first, int64_t count, float* pred, OpIsa ops, ThreadPool& pool) {
    if (!lay_.low_rank) {
      reconstruct(layer - 1, seq, first, count, pred, ops, pool);
      return;
    }
    std::vector<float> below(static_cast<size_t>(count * lay_.r));
    reconstruct(layer - 1, seq, first, count, below.data(), ops, pool);
    kernels::dense_gemm({mix_[static_cast<size_t>(layer)].data(), lay_.r, lay_.r}, below.data(), count, pred, pool,
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
      const auto r = static_cast<blasint>(lay_.r);
      const auto e = static_cast<blasint>(lay_.e);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, e, 1.0f, hi.data(), e, lo.data(), e, 0.0f, mix.data(), r);
    }
    ready_[static_cast<size_t>(layer)] = true;
    return Status::ok();
  }

  XLayout lay_;
  bool cl_;
  int64_t anchor_;
  LatentStore store_;                      // slot = sequence · n_layer + layer
  std::vector<KvBasis> bases_;             // per layer (low rank only)
  std::vector<std::vector<float>> mix_;    // per layer, CL and low rank: M_lᵀ [r][r]
  std::vector<bool> ready_;
  RopeTable rope_;                         // positions 0..capacity−1
  // XQuant-CL: the last load()'s reconstruction (positions 0..n−1 of seq in `layer`), which the
  // next layer's load() predicts from instead of walking down to the anchor again. One sequence
  // only, so the working space stays n × r; any store() at or below `layer` drops it.
  struct Chain {
    int64_t layer = -1;
    int32_t seq = 0;
    int64_t n = 0;
    std::vector<float> c;
  } chain_;
};

int64_t xq_bytes(const MemoryShape& s, const MemoryOptions& o, bool cl) {
  const XLayout lay(s, cl);
  return LatentStore::bytes_for(s.sequences * s.n_layer, s.capacity, lay.r, o.x_bits, kGroup) +
         s.n_layer * lay.basis_floats * 4;
}

}  // namespace

int64_t xquant_memory_bytes(const MemoryShape& s, const MemoryOptions& o) { return xq_bytes(s, o, false); }
std::unique_ptr<Memory> make_xquant_memory(const MemoryShape& s, const MemoryOptions& o) {
  return std::make_unique<XQuantMemory>(s, o, false);
}

int64_t xquant_cl_memory_bytes(const MemoryShape& s, const MemoryOptions& o) { return xq_bytes(s, o, true); }
std::unique_ptr<Memory> make_xquant_cl_memory(const MemoryShape& s, const MemoryOptions& o) {
  return std::make_unique<XQuantMemory>(s, o, true);
}

}  // namespace lutq::model
