// Student (student.h): loading a lutq file's decoder for scale training, and its forward and
// backward over one sequence.
#include "train/student.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "lutqfile/lutq_file.h"
#include "model/linear_spec.h"
#include "model/ops.h"
#include "train/grad_ops.h"

namespace lutq::train {
namespace {

Result<std::vector<float>> dense_tensor(const io::Checkpoint& ckpt, const std::string& name) {
  const io::TensorInfo* t = ckpt.find_tensor(name);
  if (t == nullptr) return Status::invalid(ckpt.path() + ": missing tensor '" + name + "'");
  return ckpt.dequantize(*t);
}

// A weight as fp32 [n][k]: a BCQ matrix dequantized, or a dense tensor; int8 is refused.
Result<std::vector<float>> frozen_weight(const io::Checkpoint& ckpt, const std::string& name) {
  Result<std::optional<lutqfile::BcqEntry>> bcq = lutqfile::find_bcq(ckpt, name);
  if (!bcq) return bcq.status();
  if (bcq->has_value()) {
    Result<format::BcqMatrix> w = lutqfile::read_bcq(ckpt, name);
    if (!w) return w.status();
    return format::dequantize(*w);
  }
  Result<std::optional<lutqfile::Int8Entry>> i8 = lutqfile::read_int8(ckpt, name);
  if (!i8) return i8.status();
  if (i8->has_value()) return Status::unsupported(ckpt.path() + ": '" + name + "' is int8; tune trains BCQ layers and keeps dense ones");
  return dense_tensor(ckpt, name);
}

Status check_supported(const io::Checkpoint& ckpt, const model::ModelConfig& c) {
  const std::string at = ckpt.path() + ": tune: ";
  if (c.arch != "llama" && c.arch != "qwen2") {
    return Status::unsupported(at + "architecture '" + c.arch + "' (tune supports llama and qwen2)");
  }
  if (c.qk_norm) return Status::unsupported(at + "q/k norms are not supported yet");
  if (c.rope.dim != c.head_dim) return Status::unsupported(at + "partial RoPE (n_rot < head size) is not supported yet");
  return Status::ok();
}

}  // namespace

Result<Student> Student::load(const io::Checkpoint& ckpt) { return load(ckpt, nullptr); }

Result<Student> Student::load(const io::Checkpoint& ckpt, const lutqfile::Adapter* adapter) {
  Result<model::ModelConfig> cfg = model::ModelConfig::from_checkpoint(ckpt);
  if (!cfg) return cfg.status();
  if (Status s = check_supported(ckpt, *cfg); !s) return s;
  Student st;
  size_t adapted_count = 0;
  st.config_ = *cfg;
  const model::ModelConfig& c = st.config_;
  st.shape_ = LayerShape{c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, double(c.rms_eps),
                         c.rope.mode == model::RopeMode::kNeox};
  Result<model::Embedding> emb = model::Embedding::load(ckpt, "token_embd.weight", false);
  if (!emb) return emb.status();
  st.embedding_ = std::make_unique<model::Embedding>(std::move(*emb));
  Result<std::vector<float>> on = dense_tensor(ckpt, "output_norm.weight");
  if (!on) return on.status();
  st.out_norm_ = std::move(*on);
  // A lutq file may hold a quantized head of its own even for a tied model; the engine uses it.
  const bool own_head = !c.tied_output || lutqfile::has_weight(ckpt, "output.weight");
  Result<std::vector<float>> head = frozen_weight(ckpt, own_head ? "output.weight" : "token_embd.weight");
  if (!head) return head.status();
  st.head_ = std::move(*head);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    Layer& layer = st.layers_.emplace_back();
    const std::string blk = "blk." + std::to_string(l) + ".";
    Result<std::vector<float>> an = dense_tensor(ckpt, blk + "attn_norm.weight");
    Result<std::vector<float>> fn = an ? dense_tensor(ckpt, blk + "ffn_norm.weight") : an;
    if (!fn) return fn.status();
    layer.attn_norm = std::move(*an), layer.ffn_norm = std::move(*fn);
    for (int r = 0; r < kNumLayerLinears; ++r) {
      const std::string name = blk + model::role_name(static_cast<model::LinearRole>(r)) + ".weight";
      Result<std::optional<lutqfile::BcqEntry>> entry = lutqfile::find_bcq(ckpt, name);
      if (!entry) return entry.status();
      if (entry->has_value()) {
        Result<format::BcqMatrix> w = lutqfile::read_bcq(ckpt, name);
        if (!w) return w.status();
        Result<bool> adapted = adapter != nullptr ? adapter->apply(name, *w) : Result<bool>(false);
        if (!adapted) return adapted.status();
        adapted_count += *adapted ? 1 : 0;
        TrainableLinear t{name, std::move(*w), {}, {}, l, r, {}};
        t.scales = scales_of(t.codes);
        layer.w[r] = dequantize_with(t.codes, t.scales);
        layer.trainable[r] = static_cast<int>(st.trainables_.size());
        st.trainables_.push_back(std::move(t));
      } else {
        Result<std::vector<float>> w = frozen_weight(ckpt, name);
        if (!w) return w.status();
        layer.w[r] = std::move(*w);
      }
    }
    for (int i = 0; i < 3 && c.qkv_bias; ++i) {
      Result<std::vector<float>> b = dense_tensor(ckpt, blk + model::role_name(static_cast<model::LinearRole>(i)) + ".bias");
      if (!b) return b.status();
      layer.bias[i] = std::move(*b);
    }
  }
  if (adapter != nullptr && adapted_count != adapter->size()) {
    return Status::invalid(adapter->path() + ": the adapter names matrices that are not BCQ block layers of " + ckpt.path());
  }
  st.zero_grad();
  return st;
}

int64_t Student::trainable_parameters() const {
  int64_t n = 0;
  for (const TrainableLinear& t : trainables_) n += int64_t(t.scales.alpha.size() + t.scales.offset.size());
  return n;
}

void Student::zero_grad() {
  for (TrainableLinear& t : trainables_) {
    t.grad.alpha.assign(t.scales.alpha.size(), 0.0f);
    t.grad.offset.assign(t.scales.offset.size(), 0.0f);
  }
}

void Student::scale_grad(float factor) {
  for (TrainableLinear& t : trainables_) {
    for (float& g : t.grad.alpha) g *= factor;
    for (float& g : t.grad.offset) g *= factor;
  }
}

void Student::refresh() {
  for (const TrainableLinear& t : trainables_) layers_[t.layer].w[t.role] = dequantize_with(t.codes, t.scales);
}

LayerParams<float> Student::params(int64_t l) const {
  const Layer& layer = layers_[l];
  LayerParams<float> p;
  p.attn_norm = layer.attn_norm.data(), p.ffn_norm = layer.ffn_norm.data();
  for (int r = 0; r < kNumLayerLinears; ++r) p.w[r] = layer.w[r].data();
  for (int i = 0; i < 3; ++i) p.qkv_bias[i] = layer.bias[i].empty() ? nullptr : layer.bias[i].data();
  return p;
}

Result<double> Student::step(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss loss) {
  return run(tokens, teacher_logits, loss, true);
}

Result<double> Student::loss(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss loss) {
  return run(tokens, teacher_logits, loss, false);
}

// Mean loss over the scored rows; dlogits (when not null) gets its gradient.
double Student::head_loss(const float* logits, int64_t m, std::span<const int32_t> tokens, const float* teacher,
                          TuneLoss kind, float* dlogits) const {
  const int64_t v = config_.n_vocab;
  const int64_t rows = kind == TuneLoss::kKl ? m : m - 1;
  double total = 0.0;
  std::vector<double> ps(static_cast<size_t>(v)), pt(static_cast<size_t>(v));
  const auto softmax = [v](const float* z, std::vector<double>& p) {
    const double mx = *std::max_element(z, z + v);
    double sum = 0.0;
    for (int64_t j = 0; j < v; ++j) sum += (p[j] = std::exp(double(z[j]) - mx));
    for (double& e : p) e /= sum;
    return mx + std::log(sum);  // log Σ e^z
  };
  for (int64_t i = 0; i < m; ++i) {
    float* d = dlogits == nullptr ? nullptr : dlogits + i * v;
    if (i >= rows) {
      if (d != nullptr) std::fill(d, d + v, 0.0f);
      continue;
    }
    const double lse = softmax(logits + i * v, ps);
    if (kind == TuneLoss::kKl) {
      const double lse_t = softmax(teacher + i * v, pt);
      for (int64_t j = 0; j < v; ++j) {
        if (pt[j] > 0.0) total += pt[j] * ((double(teacher[i * v + j]) - lse_t) - (double(logits[i * v + j]) - lse));
      }
    } else {
      std::fill(pt.begin(), pt.end(), 0.0);
      pt[static_cast<size_t>(tokens[i + 1])] = 1.0;
      total -= double(logits[i * v + tokens[i + 1]]) - lse;
    }
    if (d != nullptr) {
      for (int64_t j = 0; j < v; ++j) d[j] = static_cast<float>((ps[j] - pt[j]) / double(rows));
    }
  }
  return total / double(std::max<int64_t>(rows, 1));
}

Result<double> Student::run(std::span<const int32_t> tokens, const float* teacher_logits, TuneLoss kind, bool backward) {
  const auto m = static_cast<int64_t>(tokens.size());
  const int64_t d = config_.n_embd, v = config_.n_vocab;
  if (m < 2) return Status::invalid("tune: a sequence needs at least 2 tokens");
  if (kind == TuneLoss::kKl && teacher_logits == nullptr) return Status::invalid("tune: the KL loss needs teacher logits");
  for (const int32_t t : tokens) {
    if (t < 0 || t >= v) return Status::invalid("tune: token " + std::to_string(t) + " outside the vocabulary");
  }
  const model::RopeTable rope = model::make_rope_table(config_.rope, 0, m);
  std::vector<float> x(static_cast<size_t>(m * d)), y(x.size());
  for (int64_t i = 0; i < m; ++i) embedding_->row(tokens[i], x.data() + i * d);
  std::vector<LayerTape<float>> tapes(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    layer_forward(shape_, params(int64_t(l)), x.data(), m, rope.cos.data(), rope.sin.data(), y.data(), tapes[l]);
    std::swap(x, y);
  }
  std::vector<float> hn(x.size()), logits(static_cast<size_t>(m * v));
  rmsnorm_forward(x.data(), out_norm_.data(), m, d, double(config_.rms_eps), hn.data());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(v), int(d), 1.0f, hn.data(), int(d), head_.data(),
              int(d), 0.0f, logits.data(), int(v));
  std::vector<float> dlogits(backward ? logits.size() : 0);
  const double l = head_loss(logits.data(), m, tokens, teacher_logits, kind, backward ? dlogits.data() : nullptr);
  if (!backward) return l;
  std::vector<float> dhn(x.size()), dx(x.size()), dw(static_cast<size_t>(d), 0.0f);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(d), int(v), 1.0f, dlogits.data(), int(v),
              head_.data(), int(d), 0.0f, dhn.data(), int(d));
  rmsnorm_backward(x.data(), out_norm_.data(), m, d, double(config_.rms_eps), dhn.data(), dx.data(), dw.data());
  LayerGrads<float> g;
  for (size_t li = layers_.size(); li-- > 0;) {
    layer_backward(shape_, params(int64_t(li)), tapes[li], rope.cos.data(), rope.sin.data(), dx.data(), g);
    for (int r = 0; r < kNumLayerLinears; ++r) {
      const int ti = layers_[li].trainable[r];
      if (ti < 0) continue;
      TrainableLinear& t = trainables_[static_cast<size_t>(ti)];
      if (Status s = reduce_scale_grad(t.codes, g.w[r].data(), t.grad); !s) return s;
    }
    dx.swap(g.dx);
    tapes[li] = {};
  }
  return l;
}

}  // namespace lutq::train
