// `lutq moefy IN OUT --experts E --top-k K`: splits a dense model's feed-forward layers into
// experts (pipeline/moefy.h) and writes a mixture-of-experts GGUF of the same architecture.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "io/checkpoint.h"
#include "pipeline/moefy.h"

namespace lutq::apps {
namespace {

struct MoefyArgs {
  std::string in, out;
  model::MoefyOptions options;
};

int run_moefy(const MoefyArgs& a) {
  Result<std::unique_ptr<io::Checkpoint>> in = io::open_checkpoint(a.in);
  if (!in) return report_error(in.status(), kExitFailure);
  ThreadPool pool(1);
  Result<model::MoefyReport> r = model::moefy_to_file(**in, a.options, a.out, pool);
  if (!r) return report_error(r.status(), kExitFailure);
  std::printf("wrote %s: %s, %lld layers, FFN %lld -> %lld experts x %lld, top-%lld, unit weights (%.1f s)\n"
              "(a converted MoE made by MoEfication of a dense model, not a trained MoE)\n",
              a.out.c_str(), r->arch.c_str(), static_cast<long long>(r->layers), static_cast<long long>(r->n_ff),
              static_cast<long long>(a.options.experts), static_cast<long long>(r->n_ff_exp),
              static_cast<long long>(a.options.top_k), r->seconds);
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
  return {sub, [args] { return run_moefy(*args); }};
}

}  // namespace lutq::apps
