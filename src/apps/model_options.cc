#include "apps/model_options.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "core/cpu.h"
#include "kernels/linear.h"
#include "quant/quantize.h"

namespace lutq::apps {

void add_model_options(CLI::App* sub, ModelArgs& args, const std::string& ctx_default) {
  sub->add_option("MODEL", args.path, "Model file (GGUF, llama architecture)")->required();
  sub->add_option("--quant-bits", args.quant_bits, "Quantize every block linear layer to Q bit-planes at load (0 = dense fp32)")
      ->type_name("Q")
      ->default_str("0");
  sub->add_option("--quant-group", args.quant_group, "BCQ group size along k (adapted where it does not divide k)")
      ->type_name("G")
      ->default_str("128");
  sub->add_option("--quant-method", args.quant_method, "Quantizer: rtn, greedy or alternating (slow: ~20 s on 135M)")
      ->type_name("METHOD")
      ->default_str("rtn");
  sub->add_option("--isa", args.isa, "LUT-GEMM backend: ref, scalar, avx2, avx512, cuda")->type_name("ISA")->default_str("best for this CPU");
  sub->add_option("--precision", args.precision, "LUT precision: exact or fast")->type_name("P")->default_str("fast");
  sub->add_option("-t,--threads", args.threads, "Threads")->type_name("N")->default_str("2");
  sub->add_option("--ctx", args.ctx, "Context length in tokens")->type_name("N")->default_str(ctx_default);
}

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
  if (auto m = quant::parse_method(args.quant_method); !m) return Status::invalid("--quant-method: " + m.status().message());
  if (auto p = kernels::parse_precision(args.precision); !p) return Status::invalid("--precision: " + p.status().message());
  if (!args.isa.empty()) {
    auto isa = kernels::parse_isa(args.isa);
    if (!isa) return Status::invalid("--isa: " + isa.status().message());
    if (auto ok = kernels::select_isa(detect_cpu(), *isa); !ok) return Status::invalid("--isa: " + ok.status().message());
  }
  if (args.threads < 1 || args.threads > 256) return Status::invalid("--threads: must be 1..256");
  if (args.ctx < 0) return Status::invalid("--ctx: must be positive");
  return Status::ok();
}

Result<std::unique_ptr<LoadedModel>> load_model(const ModelArgs& args) {
  const auto t0 = std::chrono::steady_clock::now();
  auto out = std::make_unique<LoadedModel>();
  out->pool = std::make_unique<ThreadPool>(args.threads);
  Result<std::unique_ptr<io::Checkpoint>> ckpt = io::open_checkpoint(args.path);
  if (!ckpt) return ckpt.status();
  out->checkpoint = std::move(*ckpt);

  model::LoadOptions lo;
  if (args.quant_bits > 0) {
    quant::QuantOptions q;
    q.method = *quant::parse_method(args.quant_method);
    q.cfg.q = args.quant_bits;
    q.cfg.g = args.quant_group;
    std::optional<kernels::Isa> requested;
    if (!args.isa.empty()) requested = *kernels::parse_isa(args.isa);
    Result<kernels::Isa> isa = kernels::select_isa(detect_cpu(), requested);
    if (!isa) return Status::invalid("--isa: " + isa.status().message());
    lo.linear = model::LinearSpec::quantized(q, *isa, *kernels::parse_precision(args.precision));
    lo.show_progress = true;
  }
  Result<model::LlamaModel> m = model::LlamaModel::load(*out->checkpoint, lo, *out->pool);
  if (!m) return Status(m.status().code(), args.path + ": " + m.status().message());
  out->model.emplace(std::move(*m));
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(*out->checkpoint);
  if (!tok) return Status(tok.status().code(), args.path + ": " + tok.status().message());
  out->tokenizer.emplace(std::move(*tok));

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const model::ModelConfig& c = out->model->config();
  std::string form = args.quant_bits > 0 ? "bcq q=" + std::to_string(args.quant_bits) + " g=" + std::to_string(args.quant_group) +
                                               " " + args.quant_method + " (" + args.precision + ")"
                                         : std::string("dense fp32");
  std::fprintf(stderr, "lutq: loaded %s: %lld layers, n_embd %lld, vocab %lld, %s, %.1f MB weights, %d threads, %.2f s\n",
               args.path.c_str(), static_cast<long long>(c.n_layer), static_cast<long long>(c.n_embd),
               static_cast<long long>(c.n_vocab), form.c_str(), static_cast<double>(out->model->weight_bytes()) / 1e6,
               args.threads, secs);
  return out;
}

}  // namespace lutq::apps
