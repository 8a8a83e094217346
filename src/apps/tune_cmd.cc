// `lutq tune MODEL.lutq -f TEXT -o OUT.lutq | --adapter-out A.gguf`: scale-only training of a BCQ model (train/tune.h).
// With --teacher DENSE (a GGUF of the full-precision model) the loss is KL to the teacher's
// next-token distributions (quality recovery); with --loss ce, next-token cross-entropy on the
// text (task adaptation, no teacher needed).
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/model_options.h"
#include "core/text_file.h"
#include "gen/tokenizer.h"
#include "lutqfile/adapter.h"
#include "train/tune.h"

namespace lutq::apps {
namespace {

struct TuneArgs {
  std::string model, text, out, teacher, loss = "kl", adapter_in, adapter_out, kind = "full", checkpoint;
  int threads = 2;
  int64_t checkpoint_every = 0;
  bool resume = false;
  train::TuneOptions opts;
};

Result<train::TeacherFn> make_teacher(const TuneArgs& a, std::unique_ptr<LoadedModel>& holder) {
  if (a.opts.loss == train::TuneLoss::kCe) return train::TeacherFn{};
  if (a.teacher.empty()) return Status::invalid("--loss kl needs --teacher DENSE.gguf (or use --loss ce)");
  ModelArgs margs;
  margs.path = a.teacher;
  margs.threads = a.threads;
  margs.ctx = a.opts.ctx;
  auto loaded = load_model(margs);
  if (!loaded) return loaded.status();
  holder = std::move(*loaded);
  LoadedModel* lm = holder.get();
  return train::TeacherFn([lm](std::span<const int32_t> tokens, std::vector<float>& logits) -> Status {
    Result<std::unique_ptr<model::Memory>> mem = lm->model->make_memory(int64_t(tokens.size()));
    if (!mem) return mem.status();
    logits.resize(tokens.size() * static_cast<size_t>(lm->model->config().n_vocab));
    return lm->model->forward(tokens, 0, **mem, logits.data(), *lm->pool, model::LogitsMode::kAll);
  });
}

// The tuned model (-o) and/or the adapter (--adapter-out).
Status write_outputs(const TuneArgs& a, const io::Checkpoint& ckpt, const train::Student& student, const std::string& desc) {
  if (!a.out.empty()) {
    if (Status s = train::write_tuned(ckpt, student, a.out, desc); !s) return s;
    std::fprintf(stderr, "lutq: tune: wrote %s\n", a.out.c_str());
  }
  if (!a.adapter_out.empty()) {
    if (Status s = train::write_adapter(ckpt, student, a.adapter_out, desc); !s) return s;
    std::error_code ec;
    std::fprintf(stderr, "lutq: tune: wrote adapter %s (%.2f MiB; the model file is %.1f MiB)\n", a.adapter_out.c_str(),
                 double(std::filesystem::file_size(a.adapter_out, ec)) / 1048576.0,
                 double(std::filesystem::file_size(a.model, ec)) / 1048576.0);
  }
  return Status::ok();
}

// --checkpoint FILE: where the run's state is saved (every --checkpoint-every steps and when
// --run-steps stops it); --resume continues the run saved there.
Result<train::TuneCheckpoints> checkpoints(const TuneArgs& a, std::optional<train::TuneState>& state) {
  train::TuneCheckpoints c;
  if (a.checkpoint.empty()) {
    if (a.resume || a.opts.run_steps > 0 || a.checkpoint_every > 0) {
      return Status::invalid("--resume, --run-steps and --checkpoint-every need --checkpoint FILE");
    }
    return c;
  }
  if (a.resume) {
    Result<train::TuneState> s = train::load_tune_state(a.checkpoint);
    if (!s) return Status(s.status().code(), "--resume: " + s.status().message());
    state = std::move(*s);
    c.resume = &*state;
    std::fprintf(stderr, "lutq: tune: resuming %s at step %lld\n", a.checkpoint.c_str(),
                 static_cast<long long>(state->step));
  }
  c.every = a.checkpoint_every;
  const std::string path = a.checkpoint;
  c.save = [path](const train::TuneState& s) {
    if (Status st = train::save_tune_state(path, s); !st) return st;
    std::fprintf(stderr, "lutq: tune: saved the run's state at step %lld to %s\n", static_cast<long long>(s.step),
                 path.c_str());
    return Status::ok();
  };
  return c;
}

int run(TuneArgs a) {
  a.opts.loss = a.loss == "ce" ? train::TuneLoss::kCe : train::TuneLoss::kKl;
  a.opts.kind = a.kind == "row" ? lutqfile::AdapterKind::kRow : lutqfile::AdapterKind::kFull;
  if (a.opts.kind == lutqfile::AdapterKind::kRow && !a.adapter_in.empty()) {
    return report_error(Status::unsupported("--adapter-kind row starts from the file's own scales: --adapter cannot be combined with it"),
                        kExitFailure);
  }
  if (a.out.empty() && a.adapter_out.empty()) {
    return report_error(Status::invalid("nothing to write: give -o OUT.lutq, --adapter-out ADAPTER.gguf or both"), kExitFailure);
  }
  Result<std::unique_ptr<io::Checkpoint>> ckpt = io::open_checkpoint(a.model);
  if (!ckpt) return report_error(ckpt.status(), kExitFailure);
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(**ckpt);
  if (!tok) return report_error(tok.status(), kExitFailure);
  Result<std::string> text = read_text_file(a.text);
  if (!text) return report_error(text.status(), kExitFailure);
  const std::vector<int32_t> tokens = tok->encode(*text, /*add_special=*/false, /*parse_special=*/false);
  std::optional<train::TuneState> state;
  std::unique_ptr<LoadedModel> teacher_model;
  Result<train::TeacherFn> teacher = make_teacher(a, teacher_model);
  if (!teacher) return report_error(teacher.status(), kExitFailure);
  std::shared_ptr<const lutqfile::Adapter> start;
  if (!a.adapter_in.empty()) {
    Result<std::shared_ptr<const lutqfile::Adapter>> ad = lutqfile::Adapter::read(a.adapter_in);
    if (!ad) return report_error(Status(ad.status().code(), "--adapter: " + ad.status().message()), kExitFailure);
    start = std::move(*ad);
  }
  Result<train::Student> student = train::Student::load(**ckpt, start.get());
  if (!student) return report_error(student.status(), kExitFailure);
  if (student->trainables().empty()) return report_error(Status::invalid(a.model + ": no BCQ layer to tune"), kExitFailure);
  std::fprintf(stderr,
               "lutq: tune: %zu BCQ layers, %lld trainable scales; %zu tokens, ctx %lld, %lld steps of %lld, loss %s\n",
               student->trainables().size(), static_cast<long long>(student->trainable_parameters()), tokens.size(),
               static_cast<long long>(a.opts.ctx), static_cast<long long>(a.opts.steps),
               static_cast<long long>(a.opts.batch), a.loss.c_str());
  const auto progress = [&](const train::TuneProgress& p) {
    const double per_step = p.seconds / double(p.step - p.first);
    std::fprintf(stderr, "lutq: tune: step %lld/%lld  loss %.5f  %.0f tok/s  %.0f s left\n",
                 static_cast<long long>(p.step), static_cast<long long>(p.steps), p.loss,
                 double(a.opts.ctx * a.opts.batch) / per_step, per_step * double(p.steps - p.step));
  };
  Result<train::TuneCheckpoints> ckpts = checkpoints(a, state);
  if (!ckpts) return report_error(ckpts.status(), kExitFailure);
  Result<train::TuneReport> r = train::tune(*student, tokens, a.opts, *teacher, progress, *ckpts);
  if (!r) return report_error(r.status(), kExitFailure);
  if (r->stopped) {
    std::printf("stopped after step %lld of %lld (%.0f s); the run's state is in %s: continue with --resume\n",
                static_cast<long long>(r->steps_done), static_cast<long long>(a.opts.steps), r->seconds,
                a.checkpoint.c_str());
    return 0;
  }
  std::printf("held-out %s loss over %lld sequences: %.5f -> %.5f (%lld training sequences, %.0f s)\n", a.loss.c_str(),
              static_cast<long long>(r->held_out_sequences), r->held_out_before, r->held_out_after,
              static_cast<long long>(r->train_sequences), r->seconds);
  char desc[256];
  std::snprintf(desc, sizeof desc, "%s loss, %lld steps, ctx %lld, lr %g; held-out loss %.5f -> %.5f", a.loss.c_str(),
                static_cast<long long>(a.opts.steps), static_cast<long long>(a.opts.ctx), a.opts.adam.lr,
                r->held_out_before, r->held_out_after);
  if (Status s = write_outputs(a, **ckpt, *student, desc); !s) return report_error(s, kExitFailure);
  return 0;
}

}  // namespace

Subcommand register_tune(CLI::App& app) {
  auto a = std::make_shared<TuneArgs>();
  CLI::App* sub = app.add_subcommand("tune", "Train a BCQ model's scales (PEQA / AlphaTuning) and write a new lutq file");
  sub->add_option("model", a->model, "lutq file (from lutq quantize)")->required()->check(CLI::ExistingFile);
  sub->add_option("-f,--file", a->text, "training text (the last --held-out part is for evaluation)")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("-o,--out", a->out, "output lutq file: the model with the tuned scales");
  sub->add_option("--adapter-out", a->adapter_out,
                  "also (or instead) write the tuned scales alone as an adapter, applied with --adapter on\n"
                  "run, chat, perplexity, bench and serve");
  sub->add_option("--adapter-kind", a->kind,
                  "full: train every scale and offset; row: one multiplier per row (per-OC) or column (per-IC)\n"
                  "and plane, offsets frozen (AlphaTuning; a far smaller adapter)")
      ->check(CLI::IsMember({"full", "row"}));
  sub->add_option("--adapter", a->adapter_in, "start from this adapter's scales (continue an earlier tune)")
      ->check(CLI::ExistingFile);
  sub->add_option("--teacher", a->teacher, "the full-precision model (GGUF) for the KL loss")->check(CLI::ExistingFile);
  sub->add_option("--loss", a->loss, "kl (to --teacher) or ce (next token)")->check(CLI::IsMember({"kl", "ce"}));
  sub->add_option("--ctx", a->opts.ctx, "tokens per training sequence")->check(CLI::Range(2, 1 << 16));
  sub->add_option("--steps", a->opts.steps, "optimizer steps (one sequence each)")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--batch", a->opts.batch, "sequences per step, gradients averaged")->check(CLI::Range(1, 1 << 16));
  sub->add_option("--lr", a->opts.adam.lr, "peak learning rate (AdamW, cosine decay)")->check(CLI::PositiveNumber);
  sub->add_option("--warmup", a->opts.adam.warmup_steps, "warm-up steps")->check(CLI::Range(0, 1 << 24));
  sub->add_option("--held-out", a->opts.held_out, "fraction of the sequences held out")->check(CLI::Range(0.01, 0.9));
  sub->add_option("--seed", a->opts.seed, "order of the training sequences");
  sub->add_option("-t,--threads", a->threads, "threads of the teacher")->check(CLI::Range(1, 256));
  sub->add_option("--checkpoint", a->checkpoint,
                  "save the run's state (scales, AdamW moments, position in the text) to FILE every\n"
                  "--checkpoint-every steps and when --run-steps stops the run");
  sub->add_option("--checkpoint-every", a->checkpoint_every, "steps between checkpoints (0: only when the run stops)")
      ->check(CLI::Range(0, 1 << 24));
  sub->add_option("--run-steps", a->opts.run_steps,
                  "stop after this many steps of this invocation (the schedule stays that of --steps);\n"
                  "continue later with --resume")
      ->check(CLI::Range(0, 1 << 24));
  sub->add_flag("--resume", a->resume,
                "continue the run saved in --checkpoint (same model, text and options): it ends with the\n"
                "scales an uninterrupted run gives, bit for bit");
  return {sub, [a] { return run(*a); }};
}

}  // namespace lutq::apps
