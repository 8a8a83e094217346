// LayerBuilder: reads what blocks need from a checkpoint. A linear layer comes from a lutq
// file's BCQ, int8 or QMoE entry when it has one, else from the dense tensor, kept dense or
// quantized at load as LoadOptions::linear says.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/kernel.h"
#include "kernels/qmoe/qmoe_gemm.h"
#include "lutqfile/qmoe_entry.h"
#include "model/config.h"
#include "model/linear.h"
#include "model/linear_spec.h"
#include "model/shard.h"

namespace lutq::io {
class Checkpoint;
}
namespace lutq::lutqfile {
class Adapter;
}

namespace lutq::model {

struct LoadOptions {
  LinearSpec linear;  // dense fp32 for every layer type by default
  // The one backend choice: the BCQ backend, and from it the implementation of every other op
  // (model/ops.h OpIsa). No isa: the best for this CPU (or LUTQ_ISA). Quantize-at-load layers
  // take their LinearChoice's isa for their BCQ kernel.
  std::optional<kernels::Isa> isa;
  kernels::Precision precision = kernels::Precision::kFast;
  // Called after each block with (blocks done, blocks total); quantizing loads are slow.
  std::function<void(int64_t, int64_t)> progress;
  // Tensor parallelism: with a communicator of N > 1 ranks, this rank loads only its shard
  // (model/shard.h) and the forward pass all-reduces through it. Not owned; it must outlive the
  // Model. nullptr: the whole model, no communication.
  Communicator* comm = nullptr;
  // A scale adapter (lutqfile/adapter.h) applied to the file's BCQ matrices as they load; every
  // matrix it names must be one of them (Model::load checks).
  std::shared_ptr<const lutqfile::Adapter> adapter;
};

class LayerBuilder {
 public:
  LayerBuilder(const io::Checkpoint& ckpt, const ModelConfig& config, const LoadOptions& options, kernels::Isa isa,
               ThreadPool& pool)
      : ckpt_(ckpt), config_(config), options_(options), isa_(isa), pool_(pool) {}

  const ModelConfig& config() const { return config_; }
  const std::string& path() const;  // the checkpoint's, for error messages
  kernels::Isa isa() const { return isa_; }

  // A tensor dequantized to fp32; errors name the file and tensor.
  Result<std::vector<float>> vector(const std::string& name) const;
  // Block l's linear layer of `role` ("blk.l.<role>.weight"), with "blk.l.<role>.bias" when `bias`.
  Result<Linear> linear(int64_t l, LinearRole role, bool bias);
  // A linear layer over given fp32 weights W[n][k] (e.g. one expert's slice of a 3-D tensor),
  // kept dense or quantized as the spec resolves `name` with `role`; `name` prefixes errors.
  Result<Linear> linear_from(const std::string& name, std::vector<float> w, int64_t n, int64_t k, LinearRole role);
  // Whether the file holds weight `name` in any form (a tensor of that name or a lutq entry).
  bool has_weight(const std::string& name) const;
  // The linear layer stored under `name` (e.g. one expert's matrix, lutqfile::expert_matrix_name):
  // its lutq entry, else its dense tensor, kept dense or quantized as the spec resolves `name`.
  Result<Linear> linear_named(const std::string& name, LinearRole role) { return build(name, name, role, nullptr); }
  // The output head: output.weight, or the embedding table when tied (reusing `token_embd`).
  Result<Linear> output(std::shared_ptr<const std::vector<float>> token_embd);
  // From now on linear() reads only this rank's shard of each block linear (`full`: the
  // unsplit configuration, whose shapes the file holds).
  void set_shard(const ShardPlan& plan, const ModelConfig& full) {
    shard_ = plan;
    full_ = full;
  }
  // Names of the BCQ matrices the adapter has been applied to so far.
  const std::vector<std::string>& adapted() const { return adapted_; }

 private:
  Result<Linear> build(const std::string& name, const std::string& dense_name, std::optional<LinearRole> role,
                       std::shared_ptr<const std::vector<float>> shared, const TensorSlice& slice = {});
  // The QMoE matrix stored under `name` as a layer; nullopt when the file has none.
  Result<std::optional<Linear>> qmoe_linear(const std::string& name, const TensorSlice& slice);

  const io::Checkpoint& ckpt_;
  const ModelConfig& config_;
  const LoadOptions& options_;
  kernels::Isa isa_;
  ThreadPool& pool_;
  std::optional<ShardPlan> shard_;
  ModelConfig full_;
  std::vector<std::string> adapted_;
  lutqfile::QmoeDictionaries qmoe_dicts_;  // each dictionary read once per file
  std::map<const format::QmoeDictionary*, std::shared_ptr<const kernels::QmoeTable>> qmoe_tables_;
};

}  // namespace lutq::model
