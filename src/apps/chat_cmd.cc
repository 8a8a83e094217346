// `lutq chat MODEL`: an interactive conversation on stdin/stdout. Each turn re-applies the chat
// template to the whole conversation and runs only the tokens past the KV cache's common prefix
// with the previous prompt. "/reset" starts over; end of input exits. Works with piped stdin.
// Under `mpirun -np N`, rank 0 reads stdin and samples; the other ranks follow its steps.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/model_options.h"
#include "gen/chat_template.h"
#include "gen/sampler.h"
#include "gen/session.h"

namespace lutq::apps {
namespace {

constexpr int64_t kDefaultCtx = 4096;

struct ChatArgs {
  ModelArgs model;
  SampleArgs sample;
  std::string system;
  int64_t n_predict = 512;
  bool verbose = false;
};

int run(const ChatArgs& a) {
  if (Status st = validate_model_args(a.model); !st) return report_error(st, kExitUsage);
  if (Status st = validate_sampling_args(a.sample); !st) return report_error(st, kExitUsage);
  if (a.n_predict < 1) return report_error(Status::invalid("-n: must be >= 1"), kExitUsage);
  auto loaded = load_model(a.model);
  if (!loaded) return report_error(loaded.status(), kExitFailure);
  LoadedModel& lm = **loaded;
  // Tensor parallelism: rank 0 reads stdin and samples; the other ranks run its steps.
  if (a.model.comm != nullptr && a.model.comm->rank() != 0) return follow_rank0(lm, *a.model.comm);
  model::StepLeader steps(*lm.model, a.model.comm);
  const gen::Tokenizer& tok = *lm.tokenizer;
  const std::string tmpl_src = tok.vocab().chat_template.empty() ? "chatml" : tok.vocab().chat_template;
  Result<gen::ChatTemplate> tmpl = gen::parse_chat_template(tmpl_src);
  if (!tmpl) return report_error(tmpl.status(), kExitFailure);

  const int64_t ctx = a.model.ctx > 0 ? a.model.ctx : std::min(kDefaultCtx, lm.model->config().context_length);
  auto session = gen::Session::create(*lm.model, tok, *lm.pool, ctx, kv_cache_spec(a.model),
                                      steps.broadcasting() ? &steps : nullptr);
  if (!session) return report_error(session.status(), kExitFailure);
  const uint64_t seed = a.sample.seed ? *a.sample.seed : std::random_device{}();
  gen::Sampler sampler(gen::SamplerOptions{a.sample.temperature, a.sample.top_k, a.sample.top_p, seed});

  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive) std::fprintf(stderr, "lutq chat: type a message; /reset clears the conversation; Ctrl-D exits.\n");
  std::vector<gen::ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line)) break;
    if (line == "/reset") {
      history.clear();
      if (!a.system.empty()) history.push_back({"system", a.system});
      session->reset();
      std::fprintf(stderr, "lutq chat: conversation reset\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    const std::string prompt = gen::format_chat(*tmpl, history, true);
    const std::vector<int32_t> ids = tok.encode(prompt, /*add_special=*/true, /*parse_special=*/true);
    if (static_cast<int64_t>(ids.size()) + 1 >= session->capacity()) {
      history.pop_back();
      std::fprintf(stderr, "lutq chat: the conversation (%zu tokens) fills the context of %lld; /reset to start over\n",
                   ids.size(), static_cast<long long>(session->capacity()));
      continue;
    }
    // Reuse the cached common prefix; at least one token must run to get fresh logits.
    int64_t keep = session->common_prefix(ids);
    if (keep >= static_cast<int64_t>(ids.size())) keep = static_cast<int64_t>(ids.size()) - 1;
    session->truncate(keep);
    const auto t0 = std::chrono::steady_clock::now();
    if (Status st = session->prefill(std::span<const int32_t>(ids).subspan(static_cast<size_t>(keep))); !st) {
      return report_error(st, kExitFailure);
    }
    const auto t1 = std::chrono::steady_clock::now();
    std::string reply;
    auto r = session->generate(a.n_predict, sampler, [&reply](std::string_view piece) {
      reply.append(piece);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!r) return report_error(r.status(), kExitFailure);
    const auto t2 = std::chrono::steady_clock::now();
    history.push_back({"assistant", reply});
    if (a.verbose) {
      const double pre = std::chrono::duration<double>(t1 - t0).count();
      const double dec = std::chrono::duration<double>(t2 - t1).count();
      std::fprintf(stderr, "lutq chat: prompt %zu tokens (%lld reused from cache), prefill %.2f s; %lld tokens, %.2f tokens/s; stop: %s\n",
                   ids.size(), static_cast<long long>(keep), pre, static_cast<long long>(r->tokens),
                   r->tokens > 0 ? static_cast<double>(r->tokens) / dec : 0.0, gen::stop_reason_name(r->reason));
    }
    if (r->reason == gen::StopReason::kContextFull) {
      std::fprintf(stderr, "lutq chat: context full; /reset to start over\n");
    }
  }
  steps.stop();  // the follower ranks return
  return 0;
}

}  // namespace

Subcommand register_chat(CLI::App& app, Communicator& comm) {
  auto args = std::make_shared<ChatArgs>();
  args->model.comm = &comm;
  CLI::App* sub = app.add_subcommand(
      "chat",
      "Interactive chat: one user message per stdin line, replies streamed to stdout. The whole\n"
      "conversation is re-templated each turn; the KV cache keeps the common prefix. /reset clears\n"
      "the conversation, end of input exits. Works with piped input.");
  add_model_options(sub, args->model, "4096 (at most the trained context)");
  sub->add_option("-n,--n-predict", args->n_predict, "Maximum tokens per reply")->default_str("512");
  sub->add_option("--system", args->system, "System message (default: the template's own, if any)");
  add_sampling_options(sub, args->sample);
  sub->add_flag("-v,--verbose", args->verbose, "Per-turn timing and cache reuse on stderr");
  return Subcommand{sub, [args] { return run(*args); }, /*tensor_parallel=*/true};
}

}  // namespace lutq::apps
