// Model options shared by `lutq run`, `lutq chat` and `lutq perplexity`: the GGUF path, how the
// linear layers are stored (dense fp32, or BCQ-quantized at load), the kernel backend, threads
// and context; and loading all of it (GGUF, model, tokenizer, thread pool).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "model/model.h"

namespace CLI {
class App;
}

namespace lutq::apps {

struct ModelArgs {
  std::string path;
  int quant_bits = 0;  // 0: dense fp32
  int64_t quant_group = 128;
  std::string quant_method = "rtn";
  std::string orientation = "oc";     // oc, ic, or auto (AdaDim; needs calibration)
  bool act_order = false;             // GPTQ in activation order
  bool offset = false;                 // BCQ methods: a per-group offset (rtn always has one)
  int scale_bits = 0;                  // 0: fp16 scales; 4..8: compressed scales (format/scale_codes.h)
  std::vector<std::string> overrides;  // --override PATTERN=SETTINGS (model/linear_spec.h)
  std::string isa;  // "" = best for this CPU (or LUTQ_ISA)
  std::string precision = "fast";
  int threads = 2;
  int64_t ctx = 0;  // 0: command default
  std::string kv_cache = "f32";  // --kv-cache: a memory kind (model/memory.h, docs/memory.md)
  std::string adapter;  // --adapter: a scale adapter from lutq tune (lutqfile/adapter.h); "" none
  // The ranks of `mpirun -np N` (set by main; nullptr or one rank: no tensor parallelism).
  Communicator* comm = nullptr;
};

// Adds MODEL and the options above to `sub`; ctx_default describes --ctx's default in the help.
void add_model_options(CLI::App* sub, ModelArgs& args, const std::string& ctx_default);

struct LoadedModel {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<io::Checkpoint> checkpoint;
  std::optional<model::Model> model;
  std::optional<gen::Tokenizer> tokenizer;
};

// Sampling options of `lutq run` and `lutq chat`.
struct SampleArgs {
  float temperature = 0.8f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  std::optional<uint64_t> seed;  // none: from std::random_device
};
void add_sampling_options(CLI::App* sub, SampleArgs& args);
Status validate_sampling_args(const SampleArgs& args);

// Adds --quant-bits/--quant-group/--quant-method/--orientation/--offset/--scale-bits/--override to `sub`.
// `bits_required`: `lutq quantize` (no dense default) vs load-time quantization (default 0).
void add_quant_options(CLI::App* sub, ModelArgs& args, bool bits_required);

// Checks the option values (usage errors).
Status validate_model_args(const ModelArgs& args);

// The attention memory --kv-cache asks for (validated by validate_model_args).
model::MemorySpec kv_cache_spec(const ModelArgs& args);

// The per-layer storage the options ask for: quantized block layers (bits > 0) or dense, with
// the overrides applied in order, and the kernel backend for this CPU.
Result<model::LinearSpec> linear_spec(const ModelArgs& args);

// Opens the GGUF file, loads (and quantizes) the model and its tokenizer, printing a one-line
// summary and the load time to stderr. Over several ranks: each loads its shard after checking
// that all hold the same file and version; a rank that fails ends every rank (Communicator::abort).
Result<std::unique_ptr<LoadedModel>> load_model(const ModelArgs& args);

// A rank > 0 of a tensor-parallel `lutq serve` / `lutq chat`: runs rank 0's steps on this rank's
// shard (model/step_broadcast.h) until rank 0 sends stop (exit code 0); a step that fails here
// ends every rank (Communicator::abort) with the reason.
int follow_rank0(LoadedModel& lm, Communicator& comm);

}  // namespace lutq::apps
