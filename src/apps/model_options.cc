#include "apps/model_options.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "apps/commands.h"
#include "apps/progress.h"
#include "core/cpu.h"
#include "kernels/linear.h"
#include "lutqfile/adapter.h"
#include "model/step_broadcast.h"
#include "quant/quantize.h"

namespace lutq::apps {

void add_quant_options(CLI::App* sub, ModelArgs& args, bool bits_required) {
  CLI::Option* bits = sub->add_option("-q,--quant-bits", args.quant_bits,
                                      bits_required ? "Bit-planes per weight of the block linear layers (1..8)"
                                                    : "Quantize every block linear layer to Q bit-planes at load (0 = dense fp32)")
                          ->type_name("Q");
  if (bits_required) {
    bits->default_str("3");
  } else {
    bits->default_str("0");
  }
  sub->add_option("-g,--quant-group", args.quant_group, "BCQ group size (adapted where it does not divide the grouped dimension)")
      ->type_name("G")
      ->default_str("128");
  sub->add_option("--quant-method", args.quant_method, "Quantizer: rtn (uniform, stored as BCQ), greedy, alternating (BCQ), gptq (uniform grids),\ngptq-bcq (alternating BCQ grids) or flexround (uniform grids, learned rounding); gptq and\nflexround need calibration (lutq quantize --calib)")
      ->type_name("METHOD")
      ->default_str(args.quant_method);
  sub->add_option("--orientation", args.orientation, "Groups along k inside a row (oc), along n inside a column (ic), or\nper layer the one with the lower calibrated error (auto: AdaDim, needs calibration)")
      ->type_name("oc|ic|auto")
      ->default_str("oc");
  sub->add_flag("--act-order", args.act_order, "GPTQ: sweep columns by decreasing activation energy");
  sub->add_flag("--offset", args.offset, "Give greedy/alternating BCQ a per-group offset (rtn always has one)");
  sub->add_option("--scale-bits", args.scale_bits,
                  "Store each group's scales and offset as B-bit codes under fp16 values per row (per-IC: column)\n"
                  "and plane (4..8; 0 = fp16 scales); the bits are fitted against the decoded scales")
      ->type_name("B")
      ->default_str("0");
  sub->add_option("--override", args.overrides,
                  "Per-layer setting, repeatable, later wins: PATTERN=ITEM[,ITEM...]; PATTERN a layer type\n"
                  "(attn_q..ffn_down, output) or a glob over tensor names (blk.0.*); ITEM dense, q=N, g=N,\n"
                  "method=M, orientation=oc|ic|auto, offset=0|1, scale_bits=B, clip=0|1, int8[=T|plain]. E.g. --override ffn_down=q=4 --override output=q=8")
      ->type_name("SPEC");
}

void add_model_options(CLI::App* sub, ModelArgs& args, const std::string& ctx_default) {
  sub->add_option("MODEL", args.path, "Model: a lutq file (from lutq quantize), a GGUF file or a Hugging Face checkpoint folder")->required();
  add_quant_options(sub, args, /*bits_required=*/false);
  sub->add_option("--isa", args.isa, "LUT-GEMM backend: ref, scalar, avx2, avx512, cuda")->type_name("ISA")->default_str("best for this CPU");
  sub->add_option("--precision", args.precision, "LUT precision: exact or fast")->type_name("P")->default_str("fast");
  sub->add_option("-t,--threads", args.threads, "Threads")->type_name("N")->default_str("2");
  sub->add_option("--ctx", args.ctx, "Context length in tokens")->type_name("N")->default_str(ctx_default);
  sub->add_option("--kv-cache", args.kv_cache,
                  "Attention memory: f32, f16, q8 (int8 per token and head), q4 (KIVI: 4-bit keys per channel,\n"
                  "values per token), xquant[:B[:BASIS]] (the layer input at B bits, K/V rebuilt each step; B\n"
                  "2..8, default 4; BASIS joint (default), split, head or head-keys: the latent's blocks, head\n"
                  "decodes fastest), xquant-cl[:B] (cross-layer deltas of it); docs/memory.md")
      ->type_name("MODE")
      ->default_str("f32");
  sub->add_option("--adapter", args.adapter,
                  "Scale adapter from `lutq tune --adapter-out`: new BCQ scales for the lutq file it was\n"
                  "trained on, applied at load (docs/tuning.md)")
      ->type_name("FILE");
}

model::MemorySpec kv_cache_spec(const ModelArgs& args) { return *model::parse_memory_spec(args.kv_cache); }

void add_sampling_options(CLI::App* sub, SampleArgs& args) {
  sub->add_option("--temp", args.temperature, "Sampling temperature (0 = greedy)")->default_str("0.8");
  sub->add_option("--top-k", args.top_k, "Keep the K most likely tokens (0 = all)")->default_str("40");
  sub->add_option("--top-p", args.top_p, "Keep the smallest set of tokens with probability >= P (1 = all)")->default_str("0.95");
  sub->add_option("--seed", args.seed, "Random seed")->type_name("S")->default_str("random");
}

Status validate_sampling_args(const SampleArgs& args) {
  if (!(args.temperature >= 0.0f)) return Status::invalid("--temp: must be >= 0");
  if (args.top_k < 0) return Status::invalid("--top-k: must be >= 0");
  if (!(args.top_p > 0.0f && args.top_p <= 1.0f)) return Status::invalid("--top-p: must be in (0, 1]");
  return Status::ok();
}

Status validate_model_args(const ModelArgs& args) {
  if (args.quant_bits < 0 || args.quant_bits > format::kMaxBits) {
    return Status::invalid("--quant-bits: must be 0..8 (got " + std::to_string(args.quant_bits) + ")");
  }
  if (args.quant_group < 1) return Status::invalid("--quant-group: must be positive");
  if (args.scale_bits != 0 && (args.scale_bits < 4 || args.scale_bits > 8)) {
    return Status::invalid("--scale-bits: must be 4..8, or 0 for fp16 scales (got " + std::to_string(args.scale_bits) + ")");
  }
  if (model::LinearChoice probe; !model::apply_quantizer(args.quant_method, probe)) {
    return Status::invalid("--quant-method: " + model::apply_quantizer(args.quant_method, probe).message());
  }
  if (auto p = kernels::parse_precision(args.precision); !p) return Status::invalid("--precision: " + p.status().message());
  if (!args.isa.empty()) {
    auto isa = kernels::parse_isa(args.isa);
    if (!isa) return Status::invalid("--isa: " + isa.status().message());
    if (auto ok = kernels::select_isa(detect_cpu(), *isa); !ok) return Status::invalid("--isa: " + ok.status().message());
  }
  if (args.orientation != "oc" && args.orientation != "ic" && args.orientation != "auto") {
    return Status::invalid("--orientation: must be oc, ic or auto");
  }
  for (const std::string& o : args.overrides) {
    if (auto p = model::parse_override(o); !p) return Status::invalid("--override: " + p.status().message());
  }
  if (args.threads < 1 || args.threads > 256) return Status::invalid("--threads: must be 1..256");
  if (args.ctx < 0) return Status::invalid("--ctx: must be positive");
  if (auto kv = model::parse_memory_spec(args.kv_cache); !kv) return Status::invalid("--kv-cache: " + kv.status().message());
  return Status::ok();
}

Result<model::LinearSpec> linear_spec(const ModelArgs& args) {
  std::optional<kernels::Isa> requested;
  if (!args.isa.empty()) requested = *kernels::parse_isa(args.isa);
  Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), requested);
  if (!isa) return Status::invalid("--isa: " + isa.status().message());
  quant::QuantOptions q;
  q.cfg.q = args.quant_bits > 0 ? args.quant_bits : 3;
  q.cfg.g = args.quant_group;
  q.cfg.orientation = args.orientation == "ic" ? format::Orientation::kPerIC : format::Orientation::kPerOC;
  q.cfg.has_offset = args.offset;
  q.scale_bits = args.scale_bits;
  const kernels::Precision precision = *kernels::parse_precision(args.precision);
  model::LinearSpec spec = model::LinearSpec::quantized(q, *isa, precision);
  for (model::LinearChoice& c : spec.roles) {
    (void)model::apply_quantizer(args.quant_method, c);  // validated by validate_model_args
    c.adadim = args.orientation == "auto";
    c.act_order = args.act_order;
  }
  if (args.quant_bits == 0) {
    for (model::LinearChoice& c : spec.roles) c.quantize = false;  // dense, but overrides start from q
    spec.output.quantize = false;
  }
  for (const std::string& o : args.overrides) spec.overrides.push_back(*model::parse_override(o));
  return spec;
}

namespace {

Result<std::unique_ptr<LoadedModel>> load_model_here(const ModelArgs& args);

// Over several ranks: every rank checks its file against rank 0's before loading its shard.
Status check_same_model(const ModelArgs& args) {
  if (args.comm == nullptr || args.comm->size() == 1) return Status::ok();
  Result<model::ModelFingerprint> f = model::fingerprint_file(args.path, std::string("lutq ") + kVersion);
  if (!f) return f.status();
  return model::check_same_model(*f, *args.comm);
}

}  // namespace

Result<std::unique_ptr<LoadedModel>> load_model(const ModelArgs& args) {
  Result<std::unique_ptr<LoadedModel>> out = load_model_here(args);
  if (!out && args.comm != nullptr && args.comm->size() > 1) args.comm->abort(out.status().message());
  return out;
}

int follow_rank0(LoadedModel& lm, Communicator& comm) {
  if (Status st = model::follow_steps(*lm.model, comm, *lm.pool); !st) comm.abort(st.message());
  return 0;
}

namespace {

Result<std::unique_ptr<LoadedModel>> load_model_here(const ModelArgs& args) {
  const bool quiet = args.comm != nullptr && args.comm->rank() != 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto out = std::make_unique<LoadedModel>();
  out->pool = std::make_unique<ThreadPool>(args.threads);
  Result<std::unique_ptr<io::Checkpoint>> ckpt = io::open_checkpoint(args.path);
  if (!ckpt) return ckpt.status();
  out->checkpoint = std::move(*ckpt);
  if (Status st = check_same_model(args); !st) return st;

  Result<model::LinearSpec> spec = linear_spec(args);
  if (!spec) return spec.status();
  model::LoadOptions lo;
  lo.linear = std::move(*spec);
  lo.isa = lo.linear.output.isa;
  lo.precision = lo.linear.output.precision;
  ProgressLine progress(lo.linear.any_quantized() ? "lutq: loading and quantizing" : "lutq: loading");
  if (!quiet) lo.progress = [&progress](int64_t done, int64_t total) { progress.update(done, total, "blocks"); };
  lo.comm = args.comm;
  if (!args.adapter.empty()) {
    Result<std::shared_ptr<const lutqfile::Adapter>> adapter = lutqfile::Adapter::read(args.adapter);
    if (!adapter) return Status(adapter.status().code(), "--adapter: " + adapter.status().message());
    lo.adapter = std::move(*adapter);
  }
  Result<model::Model> m = model::Model::load(*out->checkpoint, lo, *out->pool);
  if (!m) return Status(m.status().code(), args.path + ": " + m.status().message());
  out->model.emplace(std::move(*m));
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(*out->checkpoint);
  if (!tok) return Status(tok.status().code(), args.path + ": " + tok.status().message());
  out->tokenizer.emplace(std::move(*tok));

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const model::ModelConfig& c = out->model->config();
  const model::LinearStats stats = out->model->block_linear_stats();
  char experts[64] = "";
  if (stats.expert_matrices > 0) {
    std::snprintf(experts, sizeof experts, ", %lld/%lld expert matrices quantized",
                  static_cast<long long>(stats.experts_quantized), static_cast<long long>(stats.expert_matrices));
  }
  char form[224];
  std::snprintf(form, sizeof form, "%lld/%lld block linears quantized%s, %.2f bpw, head %s",
                static_cast<long long>(stats.quantized), static_cast<long long>(stats.linears), experts, stats.bpw(),
                out->model->output().is_quantized() ? "quantized" : "dense fp32");
  if (quiet) return out;
  if (lo.adapter != nullptr) {
    std::fprintf(stderr, "lutq: adapter %s: scales of %zu matrices (%.2f MiB)%s%s\n", args.adapter.c_str(),
                 lo.adapter->size(), static_cast<double>(lo.adapter->scale_bytes()) / (1024.0 * 1024.0),
                 lo.adapter->description().empty() ? "" : ": ", lo.adapter->description().c_str());
  }
  if (const auto& sh = out->model->shard()) {
    std::fprintf(stderr, "lutq: tensor parallel over %d ranks (%s); rank 0 holds KV heads [%lld, %lld), n_ff [%lld, %lld)\n",
                 sh->size, args.comm->describe().c_str(), static_cast<long long>(sh->kv_begin),
                 static_cast<long long>(sh->kv_end), static_cast<long long>(sh->ff_begin),
                 static_cast<long long>(sh->ff_end));
  }
  char copies[64] = "";
  if (const int64_t b = out->model->prefill_copy_bytes(); b > 0) {
    std::snprintf(copies, sizeof copies, " (+ %.1f MB prefill copies)", static_cast<double>(b) / 1e6);
  }
  std::fprintf(stderr, "lutq: loaded %s: %lld layers, n_embd %lld, vocab %lld, %s, %.1f MB weights%s, %d threads, %.2f s\n",
               args.path.c_str(), static_cast<long long>(c.n_layer), static_cast<long long>(c.n_embd),
               static_cast<long long>(c.n_vocab), form, static_cast<double>(out->model->weight_bytes()) / 1e6, copies,
               args.threads, secs);
  return out;
}

}  // namespace

}  // namespace lutq::apps
