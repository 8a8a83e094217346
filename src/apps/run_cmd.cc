// `lutq run MODEL -p PROMPT`: one prompt (chat-templated unless --raw), streamed completion on
// stdout, a timing summary on stderr.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "apps/commands.h"
#include "apps/model_options.h"
#include "gen/chat_template.h"
#include "gen/sampler.h"
#include "gen/session.h"

namespace lutq::apps {
namespace {

constexpr int64_t kDefaultCtx = 2048;

struct RunArgs {
  ModelArgs model;
  SampleArgs sample;
  std::string prompt;
  int64_t n_predict = 128;
  bool raw = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run(const RunArgs& a) {
  if (Status st = validate_model_args(a.model); !st) return report_error(st, kExitUsage);
  if (Status st = validate_sampling_args(a.sample); !st) return report_error(st, kExitUsage);
  if (a.n_predict < 0) return report_error(Status::invalid("-n: must be >= 0"), kExitUsage);
  auto loaded = load_model(a.model);
  if (!loaded) return report_error(loaded.status(), kExitFailure);
  LoadedModel& lm = **loaded;
  const gen::Tokenizer& tok = *lm.tokenizer;

  std::string text = a.prompt;
  if (!a.raw) {
    const std::string& tmpl = tok.vocab().chat_template;
    Result<std::string> chat = gen::apply_chat_template(tmpl.empty() ? "chatml" : tmpl, {{"user", a.prompt}}, true);
    if (!chat) return report_error(chat.status(), kExitFailure);
    text = *chat;
  }
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/!a.raw);
  if (ids.empty()) return report_error(Status::invalid("the prompt is empty"), kExitUsage);

  const int64_t ctx = a.model.ctx > 0 ? a.model.ctx : std::min(kDefaultCtx, lm.model->config().context_length);
  auto session = gen::Session::create(*lm.model, tok, *lm.pool, ctx, kv_cache_spec(a.model));
  if (!session) return report_error(session.status(), kExitFailure);

  const auto t0 = std::chrono::steady_clock::now();
  if (Status st = session->prefill(ids); !st) return report_error(st, kExitFailure);
  const double prefill_s = seconds_since(t0);

  const uint64_t seed = a.sample.seed ? *a.sample.seed : std::random_device{}();
  gen::Sampler sampler(gen::SamplerOptions{a.sample.temperature, a.sample.top_k, a.sample.top_p, seed});
  const auto t1 = std::chrono::steady_clock::now();
  auto result = session->generate(a.n_predict, sampler, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  const double decode_s = seconds_since(t1);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!result) return report_error(result.status(), kExitFailure);

  std::fprintf(stderr,
               "lutq: prompt %zu tokens, prefill %.2f s (%.1f tokens/s); generated %lld tokens in %.2f s "
               "(%.2f tokens/s); stop: %s; seed %llu\n",
               ids.size(), prefill_s, static_cast<double>(ids.size()) / prefill_s, static_cast<long long>(result->tokens),
               decode_s, result->tokens > 0 ? static_cast<double>(result->tokens) / decode_s : 0.0,
               gen::stop_reason_name(result->reason), static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace

Subcommand register_run(CLI::App& app, Communicator& comm) {
  auto args = std::make_shared<RunArgs>();
  args->model.comm = &comm;
  CLI::App* sub = app.add_subcommand(
      "run",
      "Generate a completion for one prompt. The prompt is formatted with the model's chat template\n"
      "(tokenizer.chat_template; ChatML when absent) unless --raw. Text streams to stdout; a summary\n"
      "(prompt tokens, prefill and decode tokens/s) goes to stderr.");
  add_model_options(sub, args->model, "2048 (at most the trained context)");
  sub->add_option("-p,--prompt", args->prompt, "Prompt text")->required();
  sub->add_option("-n,--n-predict", args->n_predict, "Maximum tokens to generate")->default_str("128");
  add_sampling_options(sub, args->sample);
  sub->add_flag("--raw", args->raw, "Use the prompt as is (no chat template, special tokens not parsed)");
  return Subcommand{sub, [args] { return run(*args); }, /*tensor_parallel=*/true};
}

}  // namespace lutq::apps
