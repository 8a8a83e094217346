// `lutq perplexity MODEL -f TEXT`: llama.cpp's perplexity protocol (see gen/perplexity.h), with
// --save-logits / --kl-base to compare a model (e.g. quantized) with a base run.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "core/text_file.h"
#include "apps/model_options.h"
#include "gen/perplexity.h"

namespace lutq::apps {
namespace {

struct PerplexityArgs {
  ModelArgs model;
  std::string text_path;
  int64_t chunks = 0;
  std::string save_logits;
  std::string kl_base;
};

int run(PerplexityArgs a) {
  if (a.model.ctx == 0) a.model.ctx = 512;
  if (Status st = validate_model_args(a.model); !st) return report_error(st, kExitUsage);
  if (a.chunks < 0) return report_error(Status::invalid("--chunks: must be >= 0"), kExitUsage);
  if (a.model.comm != nullptr && a.model.comm->rank() != 0) a.save_logits.clear();  // rank 0 writes it
  Result<std::string> text = read_text_file(a.text_path);
  if (!text) return report_error(text.status(), kExitFailure);
  auto loaded = load_model(a.model);
  if (!loaded) return report_error(loaded.status(), kExitFailure);
  LoadedModel& lm = **loaded;
  const gen::Tokenizer& tok = *lm.tokenizer;
  const int64_t n_vocab = lm.model->config().n_vocab;

  const auto t_tok = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = tok.encode(*text, /*add_special=*/true, /*parse_special=*/false);
  std::fprintf(stderr, "lutq: tokenized %s: %zu tokens in %.2f s\n", a.text_path.c_str(), tokens.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t_tok).count());
  Result<gen::ChunkPlan> plan = gen::plan_chunks(static_cast<int64_t>(tokens.size()), a.model.ctx, a.chunks);
  if (!plan) return report_error(plan.status(), kExitFailure);
  const int32_t bos = tok.vocab().add_bos ? tok.bos() : -1;

  std::optional<gen::LogProbWriter> writer;
  if (!a.save_logits.empty()) {
    auto w = gen::LogProbWriter::open(a.save_logits, {static_cast<uint32_t>(n_vocab), static_cast<uint32_t>(plan->ctx),
                                                      static_cast<uint32_t>(plan->scored_per_chunk()), 0});
    if (!w) return report_error(w.status(), kExitFailure);
    writer.emplace(std::move(*w));
  }
  std::optional<gen::LogProbReader> base;
  if (!a.kl_base.empty()) {
    auto r = gen::LogProbReader::open(a.kl_base);
    if (!r) return report_error(r.status(), kExitFailure);
    const gen::LogProbHeader& h = r->header();
    if (h.n_vocab != n_vocab || h.ctx != plan->ctx || h.scored_per_chunk != plan->scored_per_chunk()) {
      return report_error(Status::invalid(a.kl_base + ": made with n_vocab " + std::to_string(h.n_vocab) + ", ctx " +
                                          std::to_string(h.ctx) + "; this run has n_vocab " + std::to_string(n_vocab) +
                                          ", ctx " + std::to_string(plan->ctx)),
                          kExitUsage);
    }
    if (h.n_chunks < plan->n_chunks) {
      std::fprintf(stderr, "lutq: %s holds %u chunks: evaluating only those\n", a.kl_base.c_str(), h.n_chunks);
      plan->n_chunks = h.n_chunks;
    }
    base.emplace(std::move(*r));
  }

  const model::MemorySpec kv = kv_cache_spec(a.model);
  Result<std::unique_ptr<model::Memory>> memory = lm.model->make_memory(plan->ctx, 1, kv.kind, kv.options);
  if (!memory) return report_error(memory.status(), kExitFailure);
  model::Memory& cache = **memory;
  std::fprintf(stderr, "lutq: KV cache %s: %lld bytes per token, %lld bytes held\n", model::memory_spec_name(kv).c_str(),
               static_cast<long long>(cache.bytes_per_token()), static_cast<long long>(cache.bytes()));
  std::vector<float> logits(static_cast<size_t>(plan->ctx * n_vocab));
  std::vector<float> scored;
  std::vector<float> base_row(static_cast<size_t>(n_vocab));
  gen::PerplexityAccumulator acc;
  gen::PerplexityAccumulator base_acc;
  gen::KlStats kl;
  const bool keep_rows = writer.has_value() || base.has_value();
  std::fprintf(stderr, "lutq: %lld chunks of %lld tokens, scoring positions %lld..%lld of each\n",
               static_cast<long long>(plan->n_chunks), static_cast<long long>(plan->ctx),
               static_cast<long long>(plan->first_scored), static_cast<long long>(plan->ctx - 2));
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < plan->n_chunks; ++c) {
    const std::vector<int32_t> chunk = gen::chunk_tokens(tokens, *plan, c, bos);
    cache.clear(0);
    if (Status st = lm.model->forward(chunk, 0, cache, logits.data(), *lm.pool, model::LogitsMode::kAll); !st) {
      return report_error(st, kExitFailure);
    }
    scored.clear();
    gen::score_chunk(logits, chunk, n_vocab, *plan, acc, keep_rows ? &scored : nullptr);
    const int64_t n_scored = plan->scored_per_chunk();
    std::vector<int32_t> next(chunk.begin() + plan->first_scored + 1, chunk.end());
    if (writer) {
      if (Status st = writer->write(scored, next); !st) return report_error(st, kExitFailure);
    }
    if (base) {
      for (int64_t j = 0; j < n_scored; ++j) {
        int32_t base_next = -1;
        if (Status st = base->read(&base_next, base_row); !st) return report_error(st, kExitFailure);
        if (base_next != next[static_cast<size_t>(j)]) {
          return report_error(Status::invalid(a.kl_base + ": token mismatch at chunk " + std::to_string(c) +
                                              " (was the base made from another text or tokenizer?)"),
                              kExitFailure);
        }
        const std::span<const float> row(scored.data() + j * n_vocab, static_cast<size_t>(n_vocab));
        kl.add(base_row, row);
        base_acc.add(-static_cast<double>(base_row[static_cast<size_t>(base_next)]));
      }
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_chunk = elapsed / static_cast<double>(c + 1);
    std::fprintf(stderr, "[%lld/%lld] PPL = %.4f ± %.4f  (%.2f s/chunk, %.0f s left)%s\n", static_cast<long long>(c + 1),
                 static_cast<long long>(plan->n_chunks), acc.perplexity(), acc.error(), per_chunk,
                 per_chunk * static_cast<double>(plan->n_chunks - c - 1),
                 base ? (" KL = " + std::to_string(kl.mean_kl())).c_str() : "");
  }
  if (writer) {
    if (Status st = writer->finish(static_cast<uint32_t>(plan->n_chunks)); !st) return report_error(st, kExitFailure);
    std::fprintf(stderr, "lutq: wrote log-probs of %lld positions to %s\n", static_cast<long long>(acc.count()),
                 a.save_logits.c_str());
  }
  std::printf("PPL = %.4f ± %.4f  (%lld chunks of %lld, %lld scored tokens)\n", acc.perplexity(), acc.error(),
              static_cast<long long>(plan->n_chunks), static_cast<long long>(plan->ctx), static_cast<long long>(acc.count()));
  if (base) {
    std::printf("base PPL = %.4f ± %.4f; mean KL(base || this) = %.6f (max %.4f); top-1 agreement = %.2f%%\n",
                base_acc.perplexity(), base_acc.error(), kl.mean_kl(), kl.max_kl, 100.0 * kl.top1_agreement());
  }
  return 0;
}

}  // namespace

Subcommand register_perplexity(CLI::App& app, Communicator& comm) {
  auto args = std::make_shared<PerplexityArgs>();
  args->model.comm = &comm;
  CLI::App* sub = app.add_subcommand(
      "perplexity",
      "Perplexity of a text file, llama.cpp's protocol: non-overlapping chunks of --ctx tokens, each from\n"
      "an empty cache (first token BOS when the vocabulary adds BOS), scoring the second half of each\n"
      "chunk. Prints running PPL per chunk on stderr, final 'PPL = x ± y' (standard error) on stdout.\n"
      "--save-logits FILE writes the scored positions' log-probs: a 32-byte header (\"LUTQLPF1\", uint32\n"
      "version 1, n_vocab, ctx, scored positions per chunk, n_chunks, 0; little-endian), then per\n"
      "position an int32 next token and n_vocab fp16 natural-log probabilities. --kl-base FILE reads such\n"
      "a file (same text and --ctx) and reports mean KL(base || this) and top-1 agreement.");
  add_model_options(sub, args->model, "512");
  sub->add_option("-f,--file", args->text_path, "Text file")->required();
  sub->add_option("--chunks", args->chunks, "Evaluate at most N chunks (0 = all)")->type_name("N")->default_str("0");
  sub->add_option("--save-logits", args->save_logits, "Write the scored log-probs here")->type_name("FILE");
  sub->add_option("--kl-base", args->kl_base, "Compare with log-probs saved by --save-logits")->type_name("FILE");
  return Subcommand{sub, [args] { return run(*args); }, /*tensor_parallel=*/true};
}

}  // namespace lutq::apps
