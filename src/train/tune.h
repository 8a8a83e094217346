// `lutq tune` (issue 14): scale-only training of a BCQ model's α and offsets (PEQA / AlphaTuning)
// against a teacher's next-token distributions (KL, quality recovery) or the text itself
// (next-token cross-entropy, task adaptation), and writing the result as a lutq file.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/checkpoint.h"
#include "train/adamw.h"
#include "train/student.h"
#include "train/tune_state.h"

namespace lutq::train {

struct TuneOptions {
  TuneLoss loss = TuneLoss::kKl;
  int64_t ctx = 256;          // tokens per training sequence
  int64_t steps = 100;        // optimizer steps
  int64_t batch = 1;          // sequences per step (their gradients averaged)
  double held_out = 0.1;      // fraction of the sequences kept out of training, for evaluation
  uint32_t seed = 1;          // order of the training sequences
  AdamWOptions adam;          // total_steps is set from steps
  // Full: every scale and offset is trained; row: one multiplier per scale line and plane
  // (train/scale_updater.h), so the adapter is small.
  lutqfile::AdapterKind kind = lutqfile::AdapterKind::kFull;
  // Stop after this many steps of this invocation (0: run to `steps`); the schedule stays that of
  // `steps`, and a checkpoint (TuneCheckpoints) lets a later run continue.
  int64_t run_steps = 0;
};

// Checkpoints of the run (tune_state.h): `save` is called every `every` steps (0: never on the
// way) and when the run stops before `steps`; `resume` continues a saved run, which must have been
// made with the same options, tokens and model (its fingerprint; refused otherwise).
struct TuneCheckpoints {
  std::function<Status(const TuneState&)> save;
  int64_t every = 0;
  const TuneState* resume = nullptr;
};

// Teacher logits [tokens][n_vocab] of one sequence (KL loss); unused for kCe.
using TeacherFn = std::function<Status(std::span<const int32_t> tokens, std::vector<float>& logits)>;

struct TuneProgress {
  int64_t step = 0, steps = 0;
  double loss = 0.0;       // this step's training loss
  double seconds = 0.0;    // since this invocation's first step (the held-out evaluation excluded)
  int64_t first = 0;       // the step this invocation started from (> 0 when resumed)
};

struct TuneReport {
  int64_t train_sequences = 0, held_out_sequences = 0;
  int64_t steps_done = 0;  // in all (a resumed run counts the earlier ones)
  bool stopped = false;    // run_steps ended the run before opts.steps (held_out_after not measured)
  double held_out_before = 0.0, held_out_after = 0.0;  // mean held-out loss
  double seconds = 0.0;
};

// Splits tokens into ctx-token sequences (the last held_out fraction, at least one, is held
// out), evaluates the held-out loss, trains opts.steps steps, evaluates again. The student's
// scales are updated in place. Errors: too few tokens, bad options, teacher failures, a resumed
// state of another run.
Result<TuneReport> tune(Student& student, std::span<const int32_t> tokens, const TuneOptions& opts,
                        const TeacherFn& teacher, const std::function<void(const TuneProgress&)>& progress,
                        const TuneCheckpoints& checkpoints = {});

// Writes `in` (the lutq file the student was loaded from) to out_path with the student's tuned
// scales in place of the stored ones; every other key and tensor is copied as is, and
// lutq.tune.* keys record what was done. Written beside out_path and renamed when complete.
Status write_tuned(const io::Checkpoint& in, const Student& student, const std::string& out_path,
                   const std::string& description);

// Writes the student's tuned scales alone as an adapter (lutqfile/adapter.h) for `in`, the lutq
// file the student was loaded from: full (every scale) or, when tuned with kind row, the row
// multipliers (the student must then have been loaded without an adapter).
Status write_adapter(const io::Checkpoint& in, const Student& student, const std::string& out_path,
                     const std::string& description);

}  // namespace lutq::train
