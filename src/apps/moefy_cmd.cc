// `lutq moefy IN OUT --experts E --top-k K`: splits a dense model's feed-forward layers into
// experts (pipeline/moefy.h) and writes a mixture-of-experts GGUF of the same architecture.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "core/text_file.h"
#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "pipeline/moefy.h"

namespace lutq::apps {
namespace {

struct MoefyArgs {
  std::string in, out;
  pipeline::MoefyOptions options;
  std::string calib;          // calibration text; empty: routers from the mean gate rows
  int64_t calib_tokens = 4096;
  int64_t calib_ctx = 512;
  int threads = 2;
};

// The calibration text's first calib_tokens tokens, in chunks of calib_ctx (BOS first in each
// where the model wants one).
Result<std::vector<std::vector<int32_t>>> calibration_chunks(const io::Checkpoint& in, const MoefyArgs& a) {
  if (a.calib_ctx < 2 || a.calib_tokens < a.calib_ctx) {
    return Status::invalid("--calib-ctx must be at least 2 and --calib-tokens at least --calib-ctx");
  }
  Result<std::string> text = read_text_file(a.calib);
  if (!text) return text.status();
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(in);
  if (!tok) return tok.status();
  const std::vector<int32_t> ids = tok->encode(*text, /*add_special=*/false, /*parse_special=*/false);
  const int32_t bos = tok->vocab().add_bos ? tok->bos() : -1;
  const int64_t body = a.calib_ctx - (bos >= 0 ? 1 : 0);
  std::vector<std::vector<int32_t>> chunks;
  const auto n = static_cast<int64_t>(ids.size());
  for (int64_t at = 0; at + body <= n && static_cast<int64_t>(chunks.size() + 1) * a.calib_ctx <= a.calib_tokens;
       at += body) {
    std::vector<int32_t> ch;
    if (bos >= 0) ch.push_back(bos);
    ch.insert(ch.end(), ids.begin() + at, ids.begin() + at + body);
    chunks.push_back(std::move(ch));
  }
  if (chunks.empty()) return Status::invalid(a.calib + ": fewer than one chunk of " + std::to_string(a.calib_ctx) + " tokens");
  return chunks;
}

int run_moefy(const MoefyArgs& a) {
  Result<std::unique_ptr<io::Checkpoint>> in = io::open_checkpoint(a.in);
  if (!in) return report_error(in.status(), kExitFailure);
  ThreadPool pool(a.threads);
  pipeline::MoefyOptions options = a.options;
  if (!a.calib.empty()) {
    Result<std::vector<std::vector<int32_t>>> chunks = calibration_chunks(**in, a);
    if (!chunks) return report_error(chunks.status(), kExitFailure);
    options.calib = std::move(*chunks);
  }
  Result<pipeline::MoefyReport> r = pipeline::moefy_to_file(**in, options, a.out, pool);
  if (!r) return report_error(r.status(), kExitFailure);
  const std::string router = r->calib_tokens > 0 ? "least-squares routers on " + std::to_string(r->calib_tokens) +
                                                       " calibration tokens"
                                                 : "mean-gate-row routers";
  std::printf("wrote %s: %s, %lld layers, FFN %lld -> %lld experts x %lld, top-%lld, unit weights, %s (%.1f s)\n"
              "(a converted MoE made by MoEfication of a dense model, not a trained MoE)\n",
              a.out.c_str(), r->arch.c_str(), static_cast<long long>(r->layers), static_cast<long long>(r->n_ff),
              static_cast<long long>(a.options.experts), static_cast<long long>(r->n_ff_exp),
              static_cast<long long>(a.options.top_k), router.c_str(), r->seconds);
  return 0;
}

}  // namespace

Subcommand register_moefy(CLI::App& app) {
  auto args = std::make_shared<MoefyArgs>();
  CLI::App* sub = app.add_subcommand(
      "moefy",
      "MoEfication: split each feed-forward layer of a dense llama / qwen2 / qwen3 GGUF into E experts\n"
      "(balanced k-means of the neurons' gate rows; router rows = the clusters' mean gate rows) and\n"
      "write a mixture-of-experts GGUF of the same architecture. With --top-k E it computes the dense\n"
      "model. Experts and routers are written F32, every other tensor in its source type.");
  sub->add_option("IN", args->in, "Input dense GGUF")->required();
  sub->add_option("OUT", args->out, "Output MoE GGUF")->required();
  sub->add_option("--experts", args->options.experts, "Experts per layer (must divide the FFN width)")
      ->default_str("8");
  sub->add_option("--top-k", args->options.top_k, "Experts used per token (1..E; change later with a new file)")
      ->default_str("2");
  sub->add_option("--iterations", args->options.iterations, "Balanced k-means rounds")->default_str("15");
  sub->add_option("--seed", args->options.seed, "Seed of the k-means initialisation")->default_str("1");
  sub->add_option("--calib", args->calib,
                  "Calibration text (never the evaluation text): fit each router by ridge least squares to its\n"
                  "clusters' activation mass on it, instead of the mean gate rows")
      ->type_name("TEXT");
  sub->add_option("--calib-tokens", args->calib_tokens, "Calibration tokens (chunks of --calib-ctx)")->default_str("4096");
  sub->add_option("--calib-ctx", args->calib_ctx, "Calibration chunk length")->default_str("512");
  sub->add_option("--ridge", args->options.ridge, "Ridge λ relative to the mean diagonal of Σ h hᵀ")->default_str("0.01");
  sub->add_option("-t,--threads", args->threads, "Threads")->default_str("2");
  return {sub, [args] { return run_moefy(*args); }};
}

}  // namespace lutq::apps
