// XQuant (Tomar et al. 2025, arXiv 2508.10395) and XQuant-CL: the memory keeps each layer's
// normed input x (what the k/v projections saw) instead of K and V, quantized, and rebuilds K and
// V for every cached position at each step through the layer's own k/v path (KvProjector:
// biases, k norm, RoPE).
//
// Grouped-query layers (2·kv_dim < n_embd) cache the latent c = x·U of rank r = 2·kv_dim
// (kv_basis.h) and rebuild k = ĉ·(W_k·U)ᵀ + b_k; other layers cache x itself (U = I) and run
// the layer's own k linear (the BCQ LUT kernels) on x̂. The per-layer basis is computed on the
// layer's first attend() and held by the memory (counted in bytes(), not per token).
//
// Values are never rebuilt: the softmax weights p of a query head sum to one, so
// o = Σ_j p_j (ĉ_j·A_vᵀ + b_v) = (Σ_j p_j ĉ_j)·A_vᵀ + b_v: one r-vector per head and one map
// (or one pass of the layer's v linear) instead of n rebuilt values (latent_attention.h).
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
#include "model/memory/latent_attention.h"
#include "model/memory/latent_store.h"
#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

constexpr int64_t kGroup = 64;  // positions per (channel, group) scale

struct XLayout {
  XLayout(const MemoryShape& s, const MemoryOptions& o, bool cl)
      : e(s.n_embd), kvd(s.n_head_kv * s.head_dim), low_rank(2 * kvd < e), r(low_rank ? 2 * kvd : e),
        // XQuant-CL's maps M_l = U_{l−1}ᵀ·U_l are least-squares transfers only between orthonormal
        // bases: it keeps the joint one (kv_basis.h).
        blocks(cl ? KvBlocks::kJoint : o.basis),
        basis_floats(low_rank ? kv_basis_floats(blocks, e, s.n_head_kv, s.head_dim) + (cl ? r * r : 0) : 0) {}
  int64_t e, kvd;
  bool low_rank;
  int64_t r;             // values cached per position and layer
  KvBlocks blocks;
  int64_t basis_floats;  // per layer: Uᵀ, the key and value maps, and for CL M_lᵀ
};

class XQuantMemory final : public Memory {
 public:
  XQuantMemory(const MemoryShape& s, const MemoryOptions& o, bool cl)
      : Memory(s), lay_(s, o, cl), cl_(cl), anchor_(o.cl_anchor),
        store_(s.sequences * s.n_layer, s.capacity, lay_.r, o.x_bits, kGroup),
        bases_(static_cast<size_t>(s.n_layer)), mix_(static_cast<size_t>(lay_.low_rank && cl ? s.n_layer : 0)),
        ready_(static_cast<size_t>(s.n_layer), false) {
    for (KvBasis& b : bases_) {
      if (!lay_.low_rank) continue;
      b.rank = lay_.r;
      b.ut.resize(static_cast<size_t>(lay_.r * lay_.e));
      b.key_map.resize(static_cast<size_t>(lay_.kvd * kv_key_width(lay_.blocks, s.n_head_kv, s.head_dim)));
      b.value_map.resize(static_cast<size_t>(lay_.kvd * kv_value_width(lay_.blocks, s.n_head_kv, s.head_dim)));
    }
    for (std::vector<float>& m : mix_) m.resize(static_cast<size_t>(lay_.r * lay_.r));
  }

  std::string_view kind() const override { return cl_ ? "xquant-cl" : "xquant"; }
  int64_t bytes() const override {
    return store_.bytes() + shape().n_layer * lay_.basis_floats * static_cast<int64_t>(sizeof(float));
  }
  int64_t bytes_per_token() const override { return shape().n_layer * store_.bytes_per_position(); }

  Status attend(int64_t layer, const AttentionRows& in, float* out, OpIsa ops, ThreadPool& pool) override {
    if (Status st = store(layer, in, ops, pool); !st) return st;
    return for_each_sequence(in.rows, [&](int32_t seq, int64_t n, const std::vector<int64_t>& rows) {
      return attend_sequence(layer, seq, n, rows, in, out, ops, pool);
    });
  }

 private:
  Status store(int64_t layer, const AttentionRows& in, OpIsa ops, ThreadPool& pool) {
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

  // The rows of seq over its positions 0..n−1: ĉ, the rebuilt keys, attention with latent values.
  Status attend_sequence(int64_t layer, int32_t seq, int64_t n, std::span<const int64_t> rows,
                         const AttentionRows& in, float* out, OpIsa ops, ThreadPool& pool) {
    c_.resize(static_cast<size_t>(n * lay_.r));
    k_.resize(static_cast<size_t>(n * lay_.kvd));
    reconstruct(layer, seq, 0, n, c_.data(), ops, pool);
    if (cl_) chain_ = {layer, seq, n, c_};  // the next layer's prediction starts from it
    LatentValues lv{c_.data(), lay_.r, lay_.r, 0, 0, nullptr, {}, in.kv};
    if (lay_.low_rank) {
      const KvBasis& b = bases_[static_cast<size_t>(layer)];
      rebuild(b.key_map, b.key_width, b.key_offset(0), b.key_stride, n, in.kv->k_bias(), k_, ops, pool);
      lv = {c_.data(), lay_.r, b.value_width, b.value_base, b.value_stride, b.value_map.data(), in.kv->v_bias(), in.kv};
      // Many rows (prefill): each row's latent sum costs n_head·n·width, rebuilding V once
      // n·width·kv_dim; past the crossing, rebuild V and attend over it directly.
      const auto m = static_cast<int64_t>(rows.size());
      if (m * shape().n_head * (b.value_width - shape().head_dim) > lay_.kvd * b.value_width) {
        v_.resize(k_.size());
        rebuild(b.value_map, b.value_width, b.value_base, b.value_stride, n, in.kv->v_bias(), v_, ops, pool);
        lv = {v_.data(), lay_.kvd, shape().head_dim, 0, shape().head_dim, nullptr, {}, nullptr};
      }
    } else if (Status st = in.kv->project_keys(c_.data(), n, k_.data(), pool); !st) {
      return st;
    }
    in.kv->position_keys(k_.data(), n, rope_, 0);
    return attend_latent(shape(), in, rows, k_.data(), lv, out, ops, pool);
  }

  // out [n][kv_dim] = ĉ·mapᵀ + bias (keys before the k norm and RoPE, or values): one GEMM over the
  // latent columns all heads share (stride 0), or one per kv head over its own columns.
  void rebuild(const std::vector<float>& map, int64_t width, int64_t base, int64_t stride, int64_t n,
               std::span<const float> bias, std::vector<float>& out, OpIsa ops, ThreadPool& pool) {
    const int64_t kvd = lay_.kvd;
    const int64_t heads = stride == 0 ? 1 : shape().n_head_kv;
    const int64_t rows_out = kvd / heads;  // output columns per GEMM
    const bool whole = width == lay_.r;    // the GEMM reads ĉ as it is
    cols_.resize(static_cast<size_t>(whole ? 0 : n * width));
    part_.resize(static_cast<size_t>(heads == 1 ? 0 : n * rows_out));
    for (int64_t g = 0; g < heads; ++g) {
      const float* src = c_.data();
      if (!whole) {
        for (int64_t p = 0; p < n; ++p) {
          std::copy_n(c_.data() + p * lay_.r + base + g * stride, width, cols_.data() + p * width);
        }
        src = cols_.data();
      }
      float* dst = heads == 1 ? out.data() : part_.data();
      kernels::dense_gemm({map.data() + g * rows_out * width, rows_out, width}, src, n, dst, pool, ops.avx2);
      for (int64_t p = 0; p < n; ++p) {
        float* kp = out.data() + p * kvd + g * rows_out;
        const float* from = dst + p * rows_out;
        for (int64_t o = 0; o < rows_out; ++o) {
          kp[o] = from[o] + (bias.empty() ? 0.0f : bias[static_cast<size_t>(g * rows_out + o)]);
        }
      }
    }
  }

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
    Result<KvBasis> b = kv_basis(*in.kv, lay_.e, shape().n_head_kv, shape().head_dim, lay_.blocks, pool);
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
  std::vector<float> c_, k_, v_, cols_, part_;  // one call's working space (not counted in bytes())
  // XQuant-CL: the last attend_sequence()'s reconstruction (positions 0..n−1 of seq in `layer`),
  // which the next layer's predicts from instead of walking down to the anchor again. One sequence
  // only, so the working space stays n × r; any store() at or below `layer` drops it.
  struct Chain {
    int64_t layer = -1;
    int32_t seq = 0;
    int64_t n = 0;
    std::vector<float> c;
  } chain_;
};

int64_t xq_bytes(const MemoryShape& s, const MemoryOptions& o, bool cl) {
  const XLayout lay(s, o, cl);
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
