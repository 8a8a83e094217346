#include "model/model.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>

#include "core/cpu.h"
#include "io/checkpoint.h"
#include "kernels/linear.h"
#include "lutqfile/adapter.h"
#include "lutqfile/lutq_file.h"
#include "model/arch/arch.h"

namespace lutq::model {
namespace {

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// This rank's shard when `comm` has several ranks, nullopt otherwise. Only blocks whose split
// model/shard.h defines (attention, SwiGLU FFN) can be split.
Result<std::optional<ShardPlan>> plan_tensor_parallel(const ModelConfig& c, const ArchDef& arch, Communicator* comm) {
  if (comm == nullptr || comm->size() == 1) return std::optional<ShardPlan>();
  if (c.qk_norm_full) {  // olmoe: one norm over all heads would need the other ranks' heads
    return Status::unsupported("tensor parallelism: " + c.arch + "'s q/k norms span every head; not split yet");
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    for (BlockKind kind : arch.layer_blocks(c, l)) {
      if (kind != BlockKind::kAttention && kind != BlockKind::kSwigluFfn) {
        return Status::unsupported("tensor parallelism: layer " + std::to_string(l) + " of " + c.arch +
                                   " has a block kind that cannot be split yet (attention and SwiGLU FFN only)");
      }
    }
  }
  Result<ShardPlan> plan = plan_shard(c, comm->rank(), comm->size());
  if (!plan) return plan.status();
  return std::optional<ShardPlan>(*plan);
}

// Every matrix an adapter names must have been one of the file's BCQ matrices.
Status check_adapter_used(const LoadOptions& options, const LayerBuilder& builder) {
  if (options.adapter == nullptr || builder.adapted().size() == options.adapter->size()) return Status::ok();
  for (const std::string& name : options.adapter->names()) {
    if (std::find(builder.adapted().begin(), builder.adapted().end(), name) == builder.adapted().end()) {
      return Status::invalid(options.adapter->path() + ": the adapter has scales for '" + name +
                             "', which this model does not hold as a BCQ matrix (an adapter for another model?)");
    }
  }
  return Status::ok();
}

// Marks a block's own layers (Model::linear) in for_each_block_linear's calls; the experts'
// are LinearObserver::kSharedExpert or 0..n_expert-1.
constexpr int64_t kOwnLayer = -2;

// Calls fn(linear, role, expert) for every linear of block l: its own layers (expert =
// kOwnLayer), then the shared expert's and each routed expert's gate, up and down.
template <class F>
void for_each_block_linear(const Model& model, int64_t l, F&& fn) {
  for (int r = 0; r < kNumLinearRoles; ++r) {
    const auto role = static_cast<LinearRole>(r);
    if (const Linear* lin = model.linear(l, role)) fn(*lin, role, kOwnLayer);
  }
  for (int64_t x = LinearObserver::kSharedExpert; x < model.config().n_expert; ++x) {
    for (LinearRole role : kFfnRoles) {
      if (const Linear* lin = model.expert_linear(l, role, x)) fn(*lin, role, x);
    }
  }
}

}  // namespace

Result<Model> Model::load(const io::Checkpoint& ckpt, const LoadOptions& options, ThreadPool& pool) {
  Result<bool> lutq_file = lutqfile::is_lutq_file(ckpt);
  if (!lutq_file) return lutq_file.status();
  Result<ModelConfig> config = ModelConfig::from_checkpoint(ckpt);
  if (!config) return config.status();
  const ArchDef* arch = find_arch(config->arch);  // from_checkpoint found it
  Result<std::optional<ShardPlan>> shard = plan_tensor_parallel(*config, *arch, options.comm);
  if (!shard) return shard.status();
  const ModelConfig full = *config;
  if (shard->has_value()) *config = local_config(full, **shard);
  const ModelConfig& c = *config;
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), options.isa);
  if (!isa) return isa.status();
  LayerBuilder builder(ckpt, c, options, *isa, pool);
  if (shard->has_value()) builder.set_shard(**shard, full);

  // A tied head reads the table as its weights: then it is held in fp32, else in its own type.
  Result<Embedding> embd = Embedding::load(ckpt, "token_embd.weight", c.tied_output);
  if (!embd) return embd.status();
  Result<Linear> output = builder.output(embd->f32());
  if (!output) return output.status();
  Model model(c, std::move(*embd), std::move(*output));
  model.ops_ = op_isa(*isa, detect_cpu());
  model.comm_ = options.comm;
  model.shard_ = *shard;
  Result<std::vector<float>> out_norm = builder.vector("output_norm.weight");
  if (!out_norm) return out_norm.status();
  model.output_norm_ = std::move(*out_norm);

  model.layers_.reserve(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    Layer layer;
    for (BlockKind kind : arch->layer_blocks(c, l)) {
      Result<std::unique_ptr<Block>> block = build_block(kind, builder, l);
      if (!block) return block.status();
      layer.push_back(std::move(*block));
    }
    model.layers_.push_back(std::move(layer));
    if (options.progress) options.progress(l + 1, c.n_layer);
  }
  if (Status s = check_adapter_used(options, builder); !s) return s;
  return model;
}

MemoryShape Model::memory_shape(int64_t capacity, int64_t sequences) const {
  const ModelConfig& c = config_;
  return MemoryShape{c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim,
                     capacity <= 0 ? c.context_length : capacity, sequences};
}

Result<std::unique_ptr<Memory>> Model::make_memory(int64_t capacity, int64_t sequences, MemoryKind kind,
                                                   const MemoryOptions& options) const {
  return model::make_memory(kind, memory_shape(capacity, sequences), options);
}

Linear* Model::find_linear(int64_t l, LinearRole role) {
  if (l < 0 || l >= config_.n_layer) return nullptr;
  for (std::unique_ptr<Block>& b : layers_[static_cast<size_t>(l)]) {
    if (Linear* lin = b->find(role)) return lin;
  }
  return nullptr;
}

const Linear* Model::linear(int64_t l, LinearRole role) const { return const_cast<Model*>(this)->find_linear(l, role); }

Linear* Model::find_expert_linear(int64_t l, LinearRole role, int64_t expert) {
  if (l < 0 || l >= config_.n_layer) return nullptr;
  for (std::unique_ptr<Block>& b : layers_[static_cast<size_t>(l)]) {
    if (Linear* lin = b->find_expert(role, expert)) return lin;
  }
  return nullptr;
}

const Linear* Model::expert_linear(int64_t l, LinearRole role, int64_t expert) const {
  return const_cast<Model*>(this)->find_expert_linear(l, role, expert);
}

Status Model::replace_linear(int64_t l, LinearRole role, Linear layer) {
  Linear* old = find_linear(l, role);
  if (old == nullptr) {
    return Status::invalid("replace_linear: block " + std::to_string(l) + " has no " + role_name(role) + " layer");
  }
  if (old->n() != layer.n() || old->k() != layer.k()) {
    return Status::invalid("replace_linear: block " + std::to_string(l) + " " + role_name(role) + " is " +
                           std::to_string(old->n()) + "x" + std::to_string(old->k()) + ", the new layer " +
                           std::to_string(layer.n()) + "x" + std::to_string(layer.k()));
  }
  if (!old->bias().empty() && layer.bias().empty()) {
    if (Status s = layer.set_bias(old->bias()); !s) return s;
  }
  *old = std::move(layer);
  return Status::ok();
}

Status Model::replace_expert_linear(int64_t l, LinearRole role, int64_t expert, Linear layer) {
  Linear* old = find_expert_linear(l, role, expert);
  const std::string what = "replace_expert_linear: block " + std::to_string(l) + " " +
                           (expert == LinearObserver::kSharedExpert ? std::string("shared expert")
                                                                    : "expert " + std::to_string(expert)) +
                           " " + role_name(role);
  if (old == nullptr) return Status::invalid(what + ": no such layer");
  if (old->n() != layer.n() || old->k() != layer.k()) {
    return Status::invalid(what + " is " + std::to_string(old->n()) + "x" + std::to_string(old->k()) +
                           ", the new layer " + std::to_string(layer.n()) + "x" + std::to_string(layer.k()));
  }
  *old = std::move(layer);
  return Status::ok();
}

int64_t Model::block_weight_bytes() const {
  int64_t total = 0;
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    // Mixture of experts: the shared expert always, the routed ones on average n_expert_used / n_expert.
    int64_t routed = 0;
    for_each_block_linear(*this, l, [&](const Linear& lin, LinearRole, int64_t expert) {
      (expert >= 0 ? routed : total) += lin.weight_bytes();
    });
    if (config_.n_expert > 0) total += routed * config_.n_expert_used / config_.n_expert;
  }
  return total;
}

LinearStats Model::block_linear_stats() const {
  LinearStats st;
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    for_each_block_linear(*this, l, [&st](const Linear& lin, LinearRole, int64_t expert) {
      const bool own = expert == kOwnLayer;
      ++(own ? st.linears : st.expert_matrices);
      (own ? st.quantized : st.experts_quantized) += lin.is_quantized() ? 1 : 0;
      st.params += lin.n() * lin.k();
      st.bytes += lin.weight_bytes() - static_cast<int64_t>(lin.bias().size() * sizeof(float));
    });
  }
  return st;
}

int64_t Model::weight_bytes() const { return block_weight_bytes() + output_.weight_bytes(); }

int64_t Model::prefill_copy_bytes() const {
  const auto copies = [](const Linear& lin) { return lin.bcq() != nullptr ? lin.bcq()->prefill_copy_bytes() : int64_t{0}; };
  int64_t total = copies(output_);
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    for_each_block_linear(*this, l, [&](const Linear& lin, LinearRole, int64_t) { total += copies(lin); });
  }
  return total;
}

std::string Model::describe() const {
  std::string s = config_.summary() + "\n";
  if (shard_) {
    s += "  tensor parallel: rank " + std::to_string(shard_->rank) + " of " + std::to_string(shard_->size) +
         " (KV heads [" + std::to_string(shard_->kv_begin) + ", " + std::to_string(shard_->kv_end) + "), n_ff [" +
         std::to_string(shard_->ff_begin) + ", " + std::to_string(shard_->ff_end) + "), " + comm_->describe() + ")\n";
  }
  s += std::string("  backend: ") + kernels::isa_name(ops_.isa) + " (dense/attention " + op_isa_name(ops_) +
       ", int8 " + kernels::int8_isa_name(ops_.int8) + ")\n";
  std::map<std::string, int> forms;  // "attn_q: <form>" -> count over blocks
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    for_each_block_linear(*this, l, [&forms](const Linear& lin, LinearRole role, int64_t expert) {
      const char* kind = expert == kOwnLayer ? ": " : expert < 0 ? "_shexp: " : "_exps: ";
      ++forms[std::string(role_name(role)) + kind + lin.describe()];
    });
  }
  for (const auto& [form, count] : forms) s += "  " + form + " x" + std::to_string(count) + "\n";
  s += "  token_embd: " + std::string(io::ggml_type_name(token_embd_.type())) + ", " + mib(token_embd_.bytes()) +
       (token_embd_.f32() ? "" : " (rows dequantized on lookup)") + "\n";
  s += "  output: " + output_.describe() + (config_.tied_output ? " (tied to token_embd)" : "") + "\n";
  s += "  weights streamed per token: " + mib(weight_bytes()) + " (blocks " + mib(block_weight_bytes()) +
       (config_.n_expert > 0 ? ", routed experts averaged over tokens" : "") + ")\n";
  return s;
}

}  // namespace lutq::model
