#include "model/llama.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>

#include "core/cpu.h"
#include "io/checkpoint.h"
#include "kernels/linear.h"
#include "lutqfile/lutq_file.h"
#include "model/llama_block.h"
#include "model/ops.h"

namespace lutq::model {
namespace {

Result<std::vector<float>> read_tensor(const io::Checkpoint& gguf, const std::string& name) {
  const io::TensorInfo* t = gguf.find_tensor(name);
  if (t == nullptr) return Status::invalid(gguf.path() + ": missing tensor '" + name + "'");
  Result<std::vector<float>> w = gguf.dequantize(*t);
  if (!w) return Status(w.status().code(), "tensor '" + name + "': " + w.status().message());
  return w;
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

KvCache::KvCache(const ModelConfig& config, int64_t capacity)
    : capacity_(capacity), n_layer_(config.n_layer), kv_dim_(config.kv_dim()) {
  const auto per_layer = static_cast<size_t>(capacity * kv_dim_);
  k_.assign(static_cast<size_t>(n_layer_), std::vector<float>(per_layer));
  v_.assign(static_cast<size_t>(n_layer_), std::vector<float>(per_layer));
}

int64_t KvCache::bytes() const { return 2 * n_layer_ * capacity_ * kv_dim_ * static_cast<int64_t>(sizeof(float)); }

namespace {

// Builds the linear layer for weight `name`: the BCQ matrix a lutq file stores under that name,
// else the dense tensor `dense_name` (the embedding table for a tied head), quantized or kept
// dense as the spec says. `shared` reuses an already loaded fp32 copy when dense.
Result<LinearLayer> build_linear(const io::Checkpoint& ckpt, const std::string& name, const std::string& dense_name,
                                 std::optional<LinearRole> role, const LoadOptions& options, kernels::Isa isa,
                                 bool use_avx2, std::shared_ptr<const std::vector<float>> shared, ThreadPool& pool) {
  const auto prefixed = [&](const Status& s) { return Status(s.code(), ckpt.path() + ": " + s.message()); };
  Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(ckpt, name);
  if (!entry) return entry.status();
  if (entry->has_value()) {
    Result<format::BcqMatrix> w = lutqfile::read_bcq(ckpt, name);
    if (!w) return w.status();
    Result<LinearLayer> lin = LinearLayer::from_bcq(*w, isa, options.precision);
    if (!lin) return prefixed(Status(lin.status().code(), name + ": " + lin.status().message()));
    return lin;
  }
  Result<std::optional<lutqfile::Int8Entry>> int8 = lutqfile::read_int8(ckpt, name);
  if (!int8) return int8.status();
  if (int8->has_value()) {
    lutqfile::Int8Entry& e = **int8;
    Result<kernels::Int8Weights> w =
        kernels::int8_from_codes(e.n, e.k, std::move(e.q), std::move(e.scale), std::move(e.fp16));
    if (!w) return prefixed(Status(w.status().code(), name + ": " + w.status().message()));
    return LinearLayer::from_int8(std::move(*w), e.threshold, use_avx2);
  }
  const LinearChoice choice = options.linear.resolve(name, role);
  if (shared == nullptr) {
    Result<std::vector<float>> w = read_tensor(ckpt, dense_name);
    if (!w) return w.status();
    shared = std::make_shared<const std::vector<float>>(std::move(*w));
  }
  const io::TensorInfo* info = ckpt.find_tensor(dense_name);
  const int64_t k = info->dims[0];
  const int64_t n = info->num_elements() / k;
  Result<LinearLayer> lin = choice.quantize ? LinearLayer::quantized(name, shared->data(), n, k, choice, &pool)
                                            : LinearLayer::dense(std::move(shared), n, k, use_avx2);
  if (!lin) return prefixed(lin.status());
  return lin;
}

}  // namespace

Result<LlamaModel> LlamaModel::load(const io::Checkpoint& gguf, const LoadOptions& options, ThreadPool& pool) {
  Result<bool> lutq_file = lutqfile::is_lutq_file(gguf);
  if (!lutq_file) return lutq_file.status();
  Result<ModelConfig> config = ModelConfig::from_checkpoint(gguf);
  if (!config) return config.status();
  const ModelConfig& c = *config;
  const bool use_avx2 = options.allow_avx2 && detect_cpu().avx2;
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), options.isa);
  if (!isa) return isa.status();

  Result<std::vector<float>> embd = read_tensor(gguf, "token_embd.weight");
  if (!embd) return embd.status();
  auto token_embd = std::make_shared<const std::vector<float>>(std::move(*embd));
  Result<LinearLayer> output =
      build_linear(gguf, "output.weight", c.tied_output ? "token_embd.weight" : "output.weight", std::nullopt, options,
                   *isa, use_avx2, c.tied_output ? token_embd : nullptr, pool);
  if (!output) return output.status();

  LlamaModel model(c, std::move(token_embd), std::move(*output));
  model.use_avx2_ = use_avx2;
  Result<std::vector<float>> out_norm = read_tensor(gguf, "output_norm.weight");
  if (!out_norm) return out_norm.status();
  model.output_norm_ = std::move(*out_norm);

  model.layers_.reserve(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    LlamaLayer layer;
    Result<std::vector<float>> norm = read_tensor(gguf, prefix + "attn_norm.weight");
    if (!norm) return norm.status();
    layer.attn_norm = std::move(*norm);
    if (!(norm = read_tensor(gguf, prefix + "ffn_norm.weight"))) return norm.status();
    layer.ffn_norm = std::move(*norm);
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      const std::string name = prefix + role_name(role) + ".weight";
      Result<LinearLayer> lin = build_linear(gguf, name, name, role, options, *isa, use_avx2, nullptr, pool);
      if (!lin) return lin.status();
      layer.linear.push_back(std::move(*lin));
    }
    model.layers_.push_back(std::move(layer));
    if (options.progress) options.progress(l + 1, c.n_layer);
  }
  return model;
}

Result<KvCache> LlamaModel::make_cache(int64_t capacity) const {
  if (capacity <= 0) capacity = config_.context_length;
  const double bytes = 2.0 * static_cast<double>(config_.n_layer) * static_cast<double>(capacity) *
                       static_cast<double>(config_.kv_dim()) * sizeof(float);
  if (bytes > 64.0 * 1024 * 1024 * 1024) {
    return Status(StatusCode::kOutOfMemory, "KV cache of " + std::to_string(capacity) + " positions would need " +
                                                mib(static_cast<int64_t>(bytes)));
  }
  return KvCache(config_, capacity);
}

Status LlamaModel::forward(std::span<const int32_t> tokens, int64_t start_pos, KvCache& cache, float* logits,
                           ThreadPool& pool, LogitsMode mode, LinearObserver* observer) const {
  const ModelConfig& c = config_;
  const auto m = static_cast<int64_t>(tokens.size());
  if (m == 0) return Status::invalid("forward: no tokens");
  if (logits == nullptr) return Status::invalid("forward: null logits buffer");
  if (cache.n_layer_ != c.n_layer || cache.kv_dim_ != c.kv_dim()) {
    return Status::invalid("forward: the KV cache was made for another model shape");
  }
  if (start_pos < 0 || start_pos > cache.size()) {
    return Status::invalid("forward: start_pos " + std::to_string(start_pos) + " leaves a gap (the cache holds " +
                           std::to_string(cache.size()) + " positions)");
  }
  if (start_pos + m > cache.capacity()) {
    return Status::invalid("KV cache full: " + std::to_string(m) + " tokens at position " + std::to_string(start_pos) +
                           " need " + std::to_string(start_pos + m) + " positions, capacity is " +
                           std::to_string(cache.capacity()));
  }
  for (int64_t t = 0; t < m; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= c.n_vocab) {
      return Status::invalid("forward: token id " + std::to_string(id) + " at index " + std::to_string(t) +
                             " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
  }
  cache.size_ = start_pos;  // entries past start_pos are invalid until this call succeeds

  const int64_t e = c.n_embd;
  const int64_t qd = c.q_dim();
  const int64_t kvd = c.kv_dim();
  BlockBuffers b(c, m);
  for (int64_t t = 0; t < m; ++t) {
    const float* row = token_embd_->data() + static_cast<int64_t>(tokens[static_cast<size_t>(t)]) * e;
    std::copy(row, row + e, b.x.data() + t * e);
  }
  const RopeTable rope = make_rope_table(c.rope, start_pos, m);
  const AttentionShape shape{c.n_head, c.n_head_kv, c.head_dim};

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& layer = layers_[static_cast<size_t>(l)];
    // layer[role].forward(in), preceded by the observer's look at the input (nothing without one).
    const auto linear = [&](LinearRole role, const float* in, float* out) -> Status {
      if (observer != nullptr) {
        if (Status s = observer->observe(l, role, in, m, layer[role].k()); !s) return s;
      }
      return layer[role].forward(in, m, out, pool);
    };
    float* k_rows = cache.k(l) + start_pos * kvd;  // the new positions' rows, written in place
    float* v_rows = cache.v(l) + start_pos * kvd;
    rms_norm_rows(b.x.data(), layer.attn_norm.data(), m, e, c.rms_eps, b.h.data());
    if (Status s = linear(LinearRole::kAttnQ, b.h.data(), b.q.data()); !s) return s;
    if (Status s = linear(LinearRole::kAttnK, b.h.data(), k_rows); !s) return s;
    if (Status s = linear(LinearRole::kAttnV, b.h.data(), v_rows); !s) return s;
    for (int64_t t = 0; t < m; ++t) {
      const float* cs = rope.cos.data() + t * rope.half_dim;
      const float* sn = rope.sin.data() + t * rope.half_dim;
      apply_rope(b.q.data() + t * qd, c.n_head, c.head_dim, cs, sn, rope.half_dim);
      apply_rope(k_rows + t * kvd, c.n_head_kv, c.head_dim, cs, sn, rope.half_dim);
    }
    attention(b.q.data(), cache.k(l), cache.v(l), m, start_pos, shape, b.att.data(), pool, use_avx2_);
    if (Status s = attention_and_ffn_residuals(c, layer, m, b, linear); !s) return s;
  }

  const int64_t first = mode == LogitsMode::kAll ? 0 : m - 1;
  rms_norm_rows(b.x.data() + first * e, output_norm_.data(), m - first, e, c.rms_eps, b.h.data());
  if (Status s = output_.forward(b.h.data(), m - first, logits, pool); !s) return s;
  cache.size_ = start_pos + m;
  return Status::ok();
}

Status LlamaModel::replace_linear(int64_t l, LinearRole role, LinearLayer layer) {
  if (l < 0 || l >= config_.n_layer) return Status::invalid("replace_linear: no block " + std::to_string(l));
  LinearLayer& old = layers_[static_cast<size_t>(l)].linear[static_cast<size_t>(role)];
  if (old.n() != layer.n() || old.k() != layer.k()) {
    return Status::invalid("replace_linear: block " + std::to_string(l) + " " + role_name(role) + " is " +
                           std::to_string(old.n()) + "x" + std::to_string(old.k()) + ", the new layer " +
                           std::to_string(layer.n()) + "x" + std::to_string(layer.k()));
  }
  old = std::move(layer);
  return Status::ok();
}

int64_t LlamaModel::block_weight_bytes() const {
  int64_t total = 0;
  for (const LlamaLayer& layer : layers_) {
    for (const LinearLayer& lin : layer.linear) total += lin.weight_bytes();
  }
  return total;
}

int64_t LlamaModel::weight_bytes() const { return block_weight_bytes() + output_.weight_bytes(); }

std::string LlamaModel::describe() const {
  std::string s = config_.summary() + "\n";
  std::map<std::string, int> forms;  // "attn_q: <form>" -> count over blocks
  for (const LlamaLayer& layer : layers_) {
    for (int r = 0; r < kNumLinearRoles; ++r) {
      ++forms[std::string(role_name(static_cast<LinearRole>(r))) + ": " + layer.linear[static_cast<size_t>(r)].describe()];
    }
  }
  for (const auto& [form, count] : forms) s += "  " + form + " x" + std::to_string(count) + "\n";
  s += "  output: " + output_.describe() + (config_.tied_output ? " (tied to token_embd)" : "") + "\n";
  s += "  weights streamed per token: " + mib(weight_bytes()) + " (blocks " + mib(block_weight_bytes()) + ")\n";
  return s;
}

}  // namespace lutq::model
