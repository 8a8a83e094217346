// `lutq quantize IN OUT`: quantizes a checkpoint's linear layers to BCQ and writes a lutq model
// file (lutqfile/lutq_file.h) with a progress line and a per-layer summary.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "apps/commands.h"
#include "core/text_file.h"
#include "apps/model_options.h"
#include "apps/progress.h"
#include "io/checkpoint.h"
#include "gen/tokenizer.h"
#include "pipeline/bit_allocation.h"
#include "pipeline/calibration.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"

namespace lutq::apps {
namespace {

struct QuantizeArgs {
  ModelArgs model;
  std::string out;
  bool per_layer = false;
  std::string calib = "../shared/data/text/sotu-calib.txt";
  std::string calib_cache;  // statistics read from / written to this file
  int64_t calib_tokens = 8192;
  int64_t calib_ctx = 512;
  double target_bpw = 0.0;         // > 0: automatic mixed precision
  std::string sensitivity = "kl";  // kl | output
  int64_t sensitivity_tokens = 256;
  int64_t selection_tokens = 1024;
  std::vector<int> candidates;     // bit counts it may choose; empty: q-1, q, q+1
  bool calib_given = false;        // --calib or --calib-cache on the command line
  bool no_importance = false;      // fit groups unweighted even with calibration statistics
  bool clip_search = false;        // loss-aware clipping search around the plain fits
  int flexround_steps = 100;       // --quant-method flexround: Adam steps per layer
  std::string experts = "bcq";     // an MoE model's routed experts: bcq (per the spec) | ternary | ternary-gptq (QMoE)
  std::string ternary_grid = "mse";
  double ternary_zeros = 0.0;
};

// --experts, --ternary-grid, --ternary-zeros as pipeline::ExpertsOptions.
Result<pipeline::ExpertsOptions> experts_options(const QuantizeArgs& a) {
  pipeline::ExpertsOptions o;
  o.form = a.experts == "bcq" ? pipeline::ExpertsForm::kBcq : pipeline::ExpertsForm::kTernary;
  o.ternary_gptq = a.experts == "ternary-gptq";
  o.ternary.scale = a.ternary_grid == "maxabs" ? quant::TernaryScale::kMaxAbs : quant::TernaryScale::kMse;
  if (!(a.ternary_zeros >= 0.0 && a.ternary_zeros <= 1.0)) return Status::invalid("--ternary-zeros: must be in [0, 1]");
  o.ternary.min_zero_fraction = a.ternary_zeros;
  return o;
}

// The calibration text as token ids (BOS first where the model wants one).
Result<std::vector<int32_t>> calibration_ids(const io::Checkpoint& in, const QuantizeArgs& a, int32_t* bos) {
  Result<std::string> text = read_text_file(a.calib);
  if (!text) return text.status();
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(in);
  if (!tok) return tok.status();
  *bos = tok->vocab().add_bos ? tok->bos() : -1;
  return tok->encode(*text, /*add_special=*/true, /*parse_special=*/false);
}

// Runs the dense model over the calibration tokens and collects every block layer's input
// statistics (pipeline/calibration.h), with a progress line; with --calib-cache, reads them from the
// cache when it was made from the same model and tokens, and writes it otherwise.
Result<pipeline::CalibrationStats> calibrate(const io::Checkpoint& in, const model::ModelConfig& config,
                                          std::span<const int32_t> ids, int32_t bos, const QuantizeArgs& a,
                                          ThreadPool& pool) {
  const std::vector<std::vector<int32_t>> chunks = pipeline::calibration_chunks(ids, a.calib_ctx, a.calib_tokens, bos);
  if (chunks.empty()) {
    return Status::invalid(a.calib + ": " + std::to_string(ids.size()) + " tokens, fewer than one chunk of " +
                           std::to_string(a.calib_ctx));
  }
  uint64_t fingerprint = 0;
  if (!a.calib_cache.empty()) {
    fingerprint = pipeline::calibration_fingerprint(in, chunks);
    if (std::filesystem::exists(a.calib_cache)) {
      Result<pipeline::CalibrationStats> cached = pipeline::load_calibration(a.calib_cache, fingerprint, config);
      if (cached) {
        std::fprintf(stderr, "lutq: calibration statistics from %s (%lld tokens)\n", a.calib_cache.c_str(),
                     static_cast<long long>(cached->tokens()));
        return cached;
      }
      std::fprintf(stderr, "lutq: not using the calibration cache: %s; collecting anew\n",
                   cached.status().message().c_str());
    }
  }
  model::LoadOptions lo;
  ProgressLine loading("lutq: loading the dense model for calibration");
  lo.progress = [&](int64_t done, int64_t total) { loading.update(done, total, "blocks"); };
  Result<model::Model> dense = model::Model::load(in, lo, pool);
  if (!dense) return dense.status();
  ProgressLine progress("lutq: calibrating (" + std::to_string(chunks.size()) + " x " + std::to_string(a.calib_ctx) +
                        " tokens)");
  pipeline::CalibrationOptions co;
  co.progress = [&](int64_t done, int64_t total) { progress.update(done, total, "chunks"); };
  Result<pipeline::CalibrationStats> stats = pipeline::collect_hessians(*dense, chunks, co, pool);
  if (stats && !a.calib_cache.empty()) {
    // The cache only saves time: failing to write it is reported, not fatal.
    if (Status st = pipeline::save_calibration(*stats, fingerprint, a.calib_cache); !st) {
      std::fprintf(stderr, "lutq: warning: calibration cache not written: %s\n", st.message().c_str());
    } else {
      std::fprintf(stderr, "lutq: calibration statistics saved to %s\n", a.calib_cache.c_str());
    }
  }
  return stats;
}

// The layer-by-layer source over the dense model (loaded into `dense`, which must outlive it).
Result<std::unique_ptr<pipeline::HessianSource>> layerwise_source(const io::Checkpoint& in, std::span<const int32_t> ids,
                                                               int32_t bos, const QuantizeArgs& a, ThreadPool& pool,
                                                               std::optional<model::Model>& dense) {
  std::vector<std::vector<int32_t>> chunks = pipeline::calibration_chunks(ids, a.calib_ctx, a.calib_tokens, bos);
  if (chunks.empty()) {
    return Status::invalid(a.calib + ": " + std::to_string(ids.size()) + " tokens, fewer than one chunk of " +
                           std::to_string(a.calib_ctx));
  }
  model::LoadOptions lo;
  ProgressLine loading("lutq: loading the dense model for calibration");
  lo.progress = [&](int64_t done, int64_t total) { loading.update(done, total, "blocks"); };
  Result<model::Model> m = model::Model::load(in, lo, pool);
  if (!m) return m.status();
  dense.emplace(std::move(*m));
  std::fprintf(stderr, "\nlutq: calibrating block by block on %zu x %lld tokens, each block's statistics just "
                       "before its layers are quantized\n", chunks.size(), static_cast<long long>(a.calib_ctx));
  Result<pipeline::LayerwiseCalibration> lw = pipeline::LayerwiseCalibration::create(*dense, std::move(chunks), pool);
  if (!lw) return lw.status();
  return std::unique_ptr<pipeline::HessianSource>(std::make_unique<pipeline::LayerwiseCalibration>(std::move(*lw)));
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// Per layer type (attn_q, ..., output): count, mean and max relative error, bpw.
void print_summary(const pipeline::QuantizeReport& r, bool per_layer) {
  struct Agg {
    int count = 0;
    double err_sum = 0.0;
    double err_max = 0.0;
    int64_t weights = 0;
    int64_t bytes = 0;
    std::string form;
  };
  std::map<std::string, Agg> by_type;
  for (const pipeline::QuantizedLayer& l : r.layers) {
    std::string type = l.name;
    if (type.starts_with("blk.")) type = type.substr(type.find('.', 4) + 1);
    if (type.ends_with(".weight")) type.resize(type.size() - 7);
    if (const size_t dot = type.find('.'); dot != std::string::npos) type.resize(dot);  // ffn_up_exps.3: all experts
    Agg& a = by_type[type];
    ++a.count;
    a.err_sum += l.rel_error;
    a.err_max = std::max(a.err_max, l.rel_error);
    a.weights += l.n * l.k;
    a.bytes += l.bytes;
    a.form = l.quantized ? l.form.substr(l.form.find(' ') + 1) : l.form;
    if (per_layer) {
      std::printf("  %-28s %-44s rel.err %.4f  %.2f bpw  %.2fs\n", l.name.c_str(), l.form.c_str(), l.rel_error,
                  l.bits_per_weight, l.seconds);
    }
  }
  std::printf("%-14s %5s  %-40s %10s %10s %8s\n", "layer type", "count", "form", "mean err", "max err", "bpw");
  for (const auto& [type, a] : by_type) {
    std::printf("%-14s %5d  %-40s %10.4f %10.4f %8.3f\n", type.c_str(), a.count, a.form.c_str(), a.err_sum / a.count,
                a.err_max, 8.0 * static_cast<double>(a.bytes) / static_cast<double>(a.weights));
  }
  std::printf("block linear layers: %.3f bits per weight, %s; file %s; %.1f s\n", r.linear_bpw(), mib(r.linear_bytes).c_str(),
              mib(r.file_bytes).c_str(), r.seconds);
  if (r.experts > 0) {
    std::printf("experts: %lld matrices written one per expert", static_cast<long long>(r.experts));
    if (r.experts_uncalibrated > 0) {
      std::printf("; %lld fitted without calibration statistics (too few calibration rows routed to them)",
                  static_cast<long long>(r.experts_uncalibrated));
    }
    if (r.dictionary_bytes > 0) {
      std::printf("; QMoE dictionary %s, not in the figures above", mib(r.dictionary_bytes).c_str());
    }
    std::printf("\n");
  }
}

// The options' own checks and the linear spec they give (errors are usage errors).
Result<model::LinearSpec> checked_spec(const QuantizeArgs& a) {
  if (a.model.quant_bits < 1) return Status::invalid("--quant-bits: must be 1..8");
  if (Status st = validate_model_args(a.model); !st) return st;
  if (a.target_bpw < 0.0 || a.target_bpw > 16.0) {
    return Status::invalid("--target-bpw: must be in (0, 16]");
  }
  for (int b : a.candidates) {
    if (b < 1 || b > 8) return Status::invalid("--bits-candidates: bit counts are 1..8");
  }
  if (a.out == a.model.path) return Status::invalid("OUT must differ from IN");
  Result<model::LinearSpec> spec = linear_spec(a.model);
  if (!spec) return spec.status();
  if (a.flexround_steps < 0) return Status::invalid("--flexround-steps: must be >= 0");
  for (model::LinearChoice& c : spec->roles) {
    c.flexround_steps = a.flexround_steps;
    if (!a.clip_search) continue;
    if (c.gptq || c.adadim || c.flexround) {
      return Status::invalid("--clip-search: applies to --quant-method rtn, greedy or alternating with "
                             "per-OC groups (not gptq, gptq-bcq, flexround or --orientation auto)");
    }
    c.clip_search = true;
  }
  return spec;
}

// --target-bpw: chooses each block layer's bits among the candidates and adds them to spec.
Status allocate(const QuantizeArgs& a, const io::Checkpoint& in, model::LinearSpec& spec,
                const std::optional<pipeline::CalibrationStats>& stats, const std::vector<int32_t>& calib_ids, int32_t bos,
                const pipeline::ExpertsOptions& experts, ThreadPool& pool) {
  std::vector<int> cand = a.candidates;
  if (cand.empty()) {
    for (int b = std::max(1, a.model.quant_bits - 1); b <= std::min(8, a.model.quant_bits + 1); ++b) cand.push_back(b);
  }
  std::sort(cand.begin(), cand.end());
  cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
  pipeline::AllocationOptions ao;
  ao.expert_min_rows = experts.min_rows;
  if (a.sensitivity == "kl") {
    // Chunks of 128 tokens from the start of the calibration text, each scored at every position.
    ao.kl_chunks = pipeline::calibration_chunks(calib_ids, 128, a.sensitivity_tokens, bos);
    if (ao.kl_chunks.empty()) {
      return Status::invalid("--sensitivity kl: the calibration text has fewer than 128 tokens");
    }
    // Held-out tokens for comparing whole allocations: after those GPTQ and the sensitivity saw
    // where the text is long enough, else after the sensitivity's.
    const auto seen = static_cast<size_t>(std::max<int64_t>(a.sensitivity_tokens, 0));
    size_t from = std::min(calib_ids.size(), std::max(seen, static_cast<size_t>(a.calib_tokens)));
    if (calib_ids.size() - from < 512) from = std::min(calib_ids.size(), seen);
    ao.selection_chunks = pipeline::calibration_chunks(std::span<const int32_t>(calib_ids).subspan(from), 512,
                                                    a.selection_tokens, bos);
    if (ao.selection_chunks.empty()) {
      std::fprintf(stderr, "lutq: warning: the calibration text has no 512 tokens beyond the sensitivity's; "
                           "allocations are compared on the sensitivity's own tokens\n");
    }
  }
  ProgressLine quantizing("lutq: quantizing every layer at " + std::to_string(cand.size()) + " bit counts");
  ao.progress = [&](int64_t done, int64_t total) { quantizing.update(done, total, "layers"); };
  std::optional<ProgressLine> measuring;
  ao.kl_progress = [&](int64_t done, int64_t total) {
    if (!measuring) measuring.emplace("lutq: measuring each layer's KL at the other bit counts");
    measuring->update(done, total, "models");
  };
  Result<pipeline::BitAllocation> alloc =
      pipeline::allocate_bits(in, spec, a.target_bpw, cand, stats ? &*stats : nullptr, pool, ao);
  if (!alloc) return alloc.status();
  std::map<int, int> per_bits;
  for (const pipeline::BitAllocation::Layer& l : alloc->layers) ++per_bits[l.bits];
  std::printf("mixed precision for %.3f bpw: %.3f bpw;", a.target_bpw, alloc->average_bpw);
  for (const auto& [bits, count] : per_bits) std::printf(" %d layers at %d bits", count, bits);
  std::printf("\n");
  if (!alloc->trials.empty()) {
    std::printf("  model KL on held-out calibration tokens, per downgrade penalty:");
    for (const pipeline::BitAllocation::Trial& t : alloc->trials) {
      if (std::isinf(t.penalty)) {
        std::printf(" [no downgrade]");
      } else {
        std::printf(" [x%g]", t.penalty);
      }
      std::printf(" %.4f at %.3f bpw%s;", t.kl, t.average_bpw, t.kl == alloc->kl ? " (chosen)" : "");
    }
    std::printf("\n");
  }
  for (model::LinearOverride& o : alloc->overrides()) spec.overrides.push_back(std::move(o));
  return Status::ok();
}

int run(const QuantizeArgs& a) {
  Result<model::LinearSpec> spec = checked_spec(a);
  if (!spec) return report_error(spec.status(), kExitUsage);
  Result<pipeline::ExpertsOptions> experts = experts_options(a);
  if (!experts) return report_error(experts.status(), kExitUsage);
  Result<std::unique_ptr<io::Checkpoint>> in = io::open_checkpoint(a.model.path);
  if (!in) return report_error(in.status(), kExitFailure);
  ThreadPool pool(a.model.threads);
  Result<model::ModelConfig> config = model::ModelConfig::from_checkpoint(**in);
  if (!config) return report_error(config.status(), kExitFailure);
  std::optional<pipeline::CalibrationStats> stats;
  std::vector<int32_t> calib_ids;  // the calibration text, tokenized once for both uses
  int32_t bos = -1;
  // Statistics of every block at once for the cache and for mixed precision; otherwise one block
  // at a time (layerwise), which is what lets a 1.5B model's GPTQ fit in memory.
  const bool calibrated = pipeline::needs_calibration(*spec, *config) || a.target_bpw > 0.0 || a.calib_given ||
                          experts->ternary_gptq;
  if (config->n_expert > 0 && a.target_bpw > 0.0 && experts->form != pipeline::ExpertsForm::kBcq) {
    return report_error(Status::invalid("--target-bpw allocates BCQ bits, the experts' included: not with --experts " +
                                        a.experts),
                        kExitUsage);
  }
  const bool layerwise = calibrated && a.calib_cache.empty() && a.target_bpw <= 0.0;
  std::optional<model::Model> dense;  // the layerwise source runs it
  std::unique_ptr<pipeline::HessianSource> source;
  if (calibrated) {
    if (a.calib_tokens < a.calib_ctx) {
      return report_error(Status::invalid("--calib-tokens: at least --calib-ctx tokens"), kExitUsage);
    }
    Result<std::vector<int32_t>> ids = calibration_ids(**in, a, &bos);
    if (!ids) return report_error(ids.status(), kExitFailure);
    calib_ids = std::move(*ids);
    if (layerwise) {
      Result<std::unique_ptr<pipeline::HessianSource>> lw = layerwise_source(**in, calib_ids, bos, a, pool, dense);
      if (!lw) return report_error(lw.status(), kExitFailure);
      source = std::move(*lw);
    } else {
      Result<pipeline::CalibrationStats> st = calibrate(**in, *config, calib_ids, bos, a, pool);
      if (!st) return report_error(st.status(), kExitFailure);
      stats.emplace(std::move(*st));
      source = std::make_unique<pipeline::StoredHessians>(*stats);
    }
    // With calibration statistics every block layer's fit weighs each input channel's error by
    // its activation energy diag(H) (quant/quantize.h), unless --no-importance.
    for (model::LinearChoice& c : spec->roles) c.quant.importance = !a.no_importance;
    std::fprintf(stderr, "lutq: group fits %s\n",
                 a.no_importance ? "unweighted (--no-importance)" : "weighted by the input channels' activation energy");
  }
  if (a.target_bpw > 0.0) {
    Status st = allocate(a, **in, *spec, stats, calib_ids, bos, *experts, pool);
    if (!st) return report_error(st, kExitFailure);
  }
  ProgressLine progress("lutq: quantizing");
  Result<pipeline::QuantizeReport> report = pipeline::quantize_to_file(
      **in, *spec, a.out, pool,
      [&](int64_t done, int64_t total, const pipeline::QuantizedLayer& l) { progress.update(done, total, l.name); },
      source.get(), *experts);
  if (!report) return report_error(report.status(), kExitFailure);
  std::printf("wrote %s\n", a.out.c_str());
  print_summary(*report, a.per_layer);
  return 0;
}

}  // namespace

Subcommand register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  args->model.quant_bits = 3;
  args->model.quant_method = "alternating";
  CLI::App* sub = app.add_subcommand(
      "quantize",
      "Quantize a checkpoint's linear layers to BCQ and write a lutq model file (GGUF-based, carrying\n"
      "config, tokenizer and chat template: `lutq run OUT` needs nothing else). The output head goes to\n"
      "8-bit uniform codes (RTN, per-OC, offsets) unless an override says otherwise (--override output=dense).");
  sub->add_option("IN", args->model.path, "Input checkpoint (GGUF)")->required();
  sub->add_option("OUT", args->out, "Output lutq file")->required();
  add_quant_options(sub, args->model, /*bits_required=*/true);
  sub->add_option("-t,--threads", args->model.threads, "Threads")->type_name("N")->default_str("2");
  sub->add_option("--calib", args->calib,
                  "Calibration text for gptq / gptq-bcq / flexround / --clip-search / --orientation auto (never the\n"
                  "evaluation text); given explicitly, also for the importance-weighted fits of rtn / greedy /\n"
                  "alternating")
      ->type_name("TEXT")
      ->default_str(args->calib)
      ->each([args](const std::string&) { args->calib_given = true; });
  sub->add_option("--calib-cache", args->calib_cache,
                  "Keep calibration statistics in FILE: read when made from the same model and tokens, "
                  "else collected and written (SmolLM2-135M: 0.8 GB)")
      ->each([args](const std::string&) { args->calib_given = true; });
  sub->add_flag("--no-importance", args->no_importance,
                "Fit every group unweighted even when calibration statistics are collected (by default each\n"
                "input channel's squared error is weighted by its calibration activation energy, diag H)");
  sub->add_flag("--clip-search", args->clip_search,
                "rtn / greedy / alternating: choose each output row's clipping ratio (1.0, 0.95, ..., 0.6 of\n"
                "every group's range) by its calibrated output error; needs calibration (--calib)");
  sub->add_option("--flexround-steps", args->flexround_steps,
                  "--quant-method flexround: Adam steps per layer (each one product of the layer's error with H)")
      ->type_name("N")
      ->default_str("100");
  sub->add_option("--sensitivity", args->sensitivity,
                  "--target-bpw sensitivity: kl (each layer's effect on the model's next-token distributions, "
                  "measured) or output (its calibrated output error; faster, a heuristic)")
      ->check(CLI::IsMember({"kl", "output"}))
      ->default_str("kl");
  sub->add_option("--sensitivity-tokens", args->sensitivity_tokens,
                  "Calibration tokens the KL sensitivity is measured on (chunks of 128)")
      ->default_str("256");
  sub->add_option("--selection-tokens", args->selection_tokens,
                  "Held-out calibration tokens the candidate allocations of --sensitivity kl are compared on "
                  "(chunks of 512)")
      ->default_str("1024");
  sub->add_option("--calib-tokens", args->calib_tokens, "Calibration tokens (chunks of --calib-ctx)")->default_str("8192");
  sub->add_option("--calib-ctx", args->calib_ctx, "Calibration chunk length")->default_str("512");
  sub->add_option("--target-bpw", args->target_bpw,
                  "Automatic mixed precision: choose each block layer's bits among --bits-candidates to\n"
                  "average at most B bits per weight at the least calibration-weighted error")
      ->type_name("B");
  sub->add_option("--bits-candidates", args->candidates, "Bit counts --target-bpw chooses from")
      ->delimiter(',')
      ->default_str("q-1,q,q+1");
  sub->add_flag("--per-layer", args->per_layer, "Print every layer's form and error, not just per layer type");
  sub->add_option("--experts", args->experts,
                  "MoE models: how the routed experts are written, one matrix per expert (docs/moe.md). bcq: as\n"
                  "the other layers (-q, -g, --quant-method, --override 'blk.*.ffn_*_exps=...'; dense keeps the\n"
                  "3-D tensors), gptq / gptq-bcq per expert on the calibration rows the router sends to it.\n"
                  "ternary: QMoE codes (ternary RTN, one dictionary for the file); ternary-gptq: the same with\n"
                  "ternary GPTQ per expert (needs --calib)")
      ->check(CLI::IsMember({"bcq", "ternary", "ternary-gptq"}))
      ->default_str("bcq");
  sub->add_option("--ternary-grid", args->ternary_grid,
                  "--experts ternary / ternary-gptq: each row's grid, mse (error-optimal) or maxabs (s = max|w|, t = s/2)")
      ->check(CLI::IsMember({"mse", "maxabs"}))
      ->default_str("mse");
  sub->add_option("--ternary-zeros", args->ternary_zeros,
                  "--experts ternary(-gptq) with --ternary-grid mse: at least this share of each row is 0 (fewer bits)")
      ->type_name("F")
      ->default_str("0");
  return Subcommand{sub, [args] { return run(*args); }};
}

}  // namespace lutq::apps
