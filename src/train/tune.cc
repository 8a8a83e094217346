// tune() and write_tuned() (tune.h).
#include "train/tune.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <cstdio>

#include "core/fp16.h"
#include "io/gguf_writer.h"
#include "lutqfile/adapter.h"
#include "lutqfile/lutq_file.h"
#include "train/scale_updater.h"

namespace lutq::train {
namespace {

Result<double> mean_loss(Student& st, std::span<const int32_t> tokens, const std::vector<int64_t>& seqs, int64_t ctx,
                         TuneLoss kind, const TeacherFn& teacher) {
  double total = 0.0;
  std::vector<float> t_logits;
  for (const int64_t s : seqs) {
    const std::span<const int32_t> seq = tokens.subspan(static_cast<size_t>(s * ctx), static_cast<size_t>(ctx));
    if (kind == TuneLoss::kKl) {
      if (Status st2 = teacher(seq, t_logits); !st2) return st2;
    }
    Result<double> l = st.loss(seq, kind == TuneLoss::kKl ? t_logits.data() : nullptr, kind);
    if (!l) return l.status();
    total += *l;
  }
  return total / double(seqs.size());
}

Status check_options(const TuneOptions& o, int64_t n_tokens) {
  if (o.ctx < 2) return Status::invalid("tune: --ctx must be >= 2");
  if (o.steps < 0) return Status::invalid("tune: --steps must be >= 0");
  if (o.batch < 1) return Status::invalid("tune: --batch must be >= 1");
  if (!(o.held_out > 0.0 && o.held_out < 1.0)) return Status::invalid("tune: --held-out must be in (0, 1)");
  if (n_tokens / o.ctx < 2) {
    return Status::invalid("tune: " + std::to_string(n_tokens) + " tokens make fewer than 2 sequences of --ctx " +
                           std::to_string(o.ctx) + " (one to train on, one held out)");
  }
  return Status::ok();
}

// What decides a run's trajectory: options, tokens, and the trainable matrices (names, codes and
// stored scales: a row adapter multiplies the stored ones).
std::string fingerprint(const TuneOptions& o, std::span<const int32_t> tokens, const Student& st) {
  uint64_t h = fnv1a(tokens.data(), tokens.size_bytes());
  const int64_t ints[] = {o.ctx, o.steps, o.batch, int64_t(o.seed), int64_t(o.loss), int64_t(o.kind), o.adam.warmup_steps};
  const double reals[] = {o.held_out, o.adam.lr, o.adam.beta1, o.adam.beta2, o.adam.eps, o.adam.weight_decay, o.adam.min_lr_ratio};
  h = fnv1a(ints, sizeof ints, h);
  h = fnv1a(reals, sizeof reals, h);
  for (const TrainableLinear& t : st.trainables()) {
    const uint64_t b = lutqfile::base_hash(t.codes);
    h = fnv1a(t.name.data(), t.name.size(), h);
    h = fnv1a(&b, sizeof b, h);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// Where the training loop stands: the shuffled order, its generator, sequences drawn, steps done.
struct LoopState {
  std::vector<int64_t> train;
  std::mt19937 rng;
  int64_t next = 0;
  int64_t step = 0;
};

// Continues a saved run: checks it is this run, restores the loop, the scales and the moments.
Status resume_run(const TuneState& saved, const std::string& fp, ScaleUpdater& updater, Student& student,
                  LoopState& loop, TuneReport& report) {
  if (saved.fingerprint != fp) {
    return Status::invalid("the checkpoint was made by another run (other model, text or options: fingerprint " +
                           saved.fingerprint + ", this run's " + fp + "); --resume needs the same ones");
  }
  const auto n = static_cast<int64_t>(loop.train.size());
  if (static_cast<int64_t>(saved.order.size()) != n ||
      std::any_of(saved.order.begin(), saved.order.end(), [&](int64_t s) { return s < 0 || s >= n; })) {
    return Status::invalid("the checkpoint's sequence order does not fit this run's " + std::to_string(n) + " sequences");
  }
  std::istringstream is(saved.rng);
  is >> loop.rng;
  if (is.fail()) return Status::invalid("the checkpoint's generator state is unreadable");
  if (Status s = updater.restore(student, saved.tensors, saved.step); !s) return s;
  student.refresh();
  loop.train = saved.order;
  loop.next = saved.next;
  loop.step = saved.step;
  report.held_out_before = saved.held_out_before;
  return Status::ok();
}

TuneState make_state(const std::string& fp, const LoopState& loop, const ScaleUpdater& updater, const Student& student,
                     const TuneReport& report) {
  TuneState s;
  s.fingerprint = fp;
  s.step = loop.step;
  s.next = loop.next;
  s.order = loop.train;
  std::ostringstream os;
  os << loop.rng;
  s.rng = os.str();
  s.held_out_before = report.held_out_before;
  s.tensors = updater.save(student);
  return s;
}

// One optimizer step over opts.batch sequences drawn in the shuffled order; returns its mean loss.
Result<double> train_step(Student& student, ScaleUpdater& updater, std::span<const int32_t> tokens,
                          const TuneOptions& opts, const TeacherFn& teacher, LoopState& loop) {
  student.zero_grad();
  double step_loss = 0.0;
  std::vector<float> t_logits;
  const auto n = static_cast<int64_t>(loop.train.size());
  for (int64_t b = 0; b < opts.batch; ++b, ++loop.next) {
    if (loop.next % n == 0) std::shuffle(loop.train.begin(), loop.train.end(), loop.rng);
    const int64_t s = loop.train[static_cast<size_t>(loop.next % n)];
    const std::span<const int32_t> seq = tokens.subspan(static_cast<size_t>(s * opts.ctx), static_cast<size_t>(opts.ctx));
    if (opts.loss == TuneLoss::kKl) {
      if (Status st = teacher(seq, t_logits); !st) return st;
    }
    Result<double> l = student.step(seq, opts.loss == TuneLoss::kKl ? t_logits.data() : nullptr, opts.loss);
    if (!l) return l.status();
    step_loss += *l / double(opts.batch);
  }
  student.scale_grad(1.0f / float(opts.batch));
  if (Status st = updater.step(student); !st) return st;
  student.refresh();
  ++loop.step;
  return step_loss;
}

}  // namespace

Result<TuneReport> tune(Student& student, std::span<const int32_t> tokens, const TuneOptions& opts,
                        const TeacherFn& teacher, const std::function<void(const TuneProgress&)>& progress,
                        const TuneCheckpoints& checkpoints) {
  if (Status s = check_options(opts, int64_t(tokens.size())); !s) return s;
  if (opts.run_steps < 0) return Status::invalid("tune: --run-steps must be >= 0");
  AdamWOptions adam = opts.adam;
  adam.total_steps = std::max<int64_t>(opts.steps, 1);
  adam.warmup_steps = std::min(adam.warmup_steps, adam.total_steps);
  if (Status s = validate(adam); !s) return s;
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  const int64_t n_seq = int64_t(tokens.size()) / opts.ctx;
  const int64_t n_held = std::max<int64_t>(1, int64_t(double(n_seq) * opts.held_out));
  TuneReport report;
  report.train_sequences = n_seq - n_held;
  report.held_out_sequences = n_held;
  LoopState loop{std::vector<int64_t>(static_cast<size_t>(n_seq - n_held)), std::mt19937(opts.seed)};
  std::vector<int64_t> held(static_cast<size_t>(n_held));
  std::iota(loop.train.begin(), loop.train.end(), 0);
  std::iota(held.begin(), held.end(), n_seq - n_held);
  ScaleUpdater updater(student, opts.kind, adam);
  // Only checkpoints need it (it hashes every trained matrix's codes).
  const bool checkpointed = checkpoints.resume != nullptr || static_cast<bool>(checkpoints.save);
  const std::string fp = checkpointed ? fingerprint(opts, tokens, student) : std::string();
  if (checkpoints.resume != nullptr) {
    if (Status s = resume_run(*checkpoints.resume, fp, updater, student, loop, report); !s) return s;
  } else {
    Result<double> before = mean_loss(student, tokens, held, opts.ctx, opts.loss, teacher);
    if (!before) return before.status();
    report.held_out_before = *before;
  }
  const int64_t last = opts.run_steps > 0 ? std::min(opts.steps, loop.step + opts.run_steps) : opts.steps;
  const int64_t first = loop.step;
  const auto t_train = std::chrono::steady_clock::now();
  while (loop.step < last) {
    Result<double> l = train_step(student, updater, tokens, opts, teacher, loop);
    if (!l) return l.status();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
    if (progress) progress({loop.step, opts.steps, *l, secs, first});
    const bool due = checkpoints.every > 0 && loop.step % checkpoints.every == 0 && loop.step < last;
    if (checkpoints.save && due) {
      if (Status s = checkpoints.save(make_state(fp, loop, updater, student, report)); !s) return s;
    }
  }
  report.steps_done = loop.step;
  if (loop.step < opts.steps) {
    report.stopped = true;
    if (checkpoints.save) {
      if (Status s = checkpoints.save(make_state(fp, loop, updater, student, report)); !s) return s;
    }
    report.seconds = elapsed();
    return report;
  }
  updater.finish(student);
  student.refresh();
  Result<double> after = mean_loss(student, tokens, held, opts.ctx, opts.loss, teacher);
  if (!after) return after.status();
  report.held_out_after = *after;
  report.seconds = elapsed();
  return report;
}

Status write_tuned(const io::Checkpoint& in, const Student& student, const std::string& out_path,
                   const std::string& description) {
  std::map<std::string, const TrainableLinear*, std::less<>> by_name;
  for (const TrainableLinear& t : student.trainables()) {
    // Tuned scales are fp16; the file's entry stores codes (format/scale_codes.h) in other tensors.
    if (t.codes.codes.bits > 0) {
      return Status::unsupported(in.path() + ": " + t.name + " has compressed scales (--scale-bits): tuned scales " +
                                 "cannot be written into it; write an adapter (--adapter-out) or quantize with fp16 scales");
    }
    by_name.emplace(t.name, &t);
  }
  io::GgufWriter out;
  // Tuned scales are no longer uniform: their entries lose the uniform key and store every plane.
  const auto tuned_uniform_key = [&](const std::string& key) {
    constexpr std::string_view kSuffix = ".uniform";
    if (!key.starts_with(lutqfile::kBcqKeyPrefix) || !key.ends_with(kSuffix)) return false;
    const std::string_view name =
        std::string_view(key).substr(lutqfile::kBcqKeyPrefix.size(), key.size() - lutqfile::kBcqKeyPrefix.size() - kSuffix.size());
    return by_name.find(name) != by_name.end();
  };
  for (const std::string& key : in.keys()) {
    if (key.starts_with("lutq.tune.") || tuned_uniform_key(key)) continue;
    if (Status s = out.add(key, *in.find(key)); !s) return Status(s.code(), out_path + ": " + s.message());
  }
  if (Status s = out.add_string("lutq.tune.description", description); !s) return s;
  for (const io::TensorInfo& info : in.tensors()) {
    std::span<const uint8_t> bytes = in.tensor_bytes(info);
    std::vector<int64_t> dims = info.dims;
    std::vector<uint8_t> tuned;
    for (const std::string_view suffix : {std::string_view(".bcq_alpha"), std::string_view(".bcq_offset")}) {
      if (!info.name.ends_with(suffix)) continue;
      const auto it = by_name.find(std::string_view(info.name).substr(0, info.name.size() - suffix.size()));
      if (it == by_name.end()) continue;
      format::BcqMatrix w = it->second->codes;
      if (Status s = store_scales(it->second->scales, w); !s) return Status(s.code(), it->first + ": " + s.message());
      const std::vector<uint16_t>& h = suffix == ".bcq_alpha" ? w.alpha : w.offset;
      tuned.assign(reinterpret_cast<const uint8_t*>(h.data()), reinterpret_cast<const uint8_t*>(h.data() + h.size()));
      if (suffix == ".bcq_alpha" && !dims.empty()) dims[0] = w.cfg.q;  // uniform storage held plane 0 only
      if (tuned.size() != bytes.size() * (dims == info.dims ? 1 : static_cast<size_t>(w.cfg.q))) {
        return Status::invalid(info.name + ": tuned size differs from the stored one");
      }
      bytes = tuned;
    }
    if (Status s = out.add_tensor(info.name, dims, info.type, bytes); !s) return Status(s.code(), out_path + ": " + s.message());
  }
  return out.write_file(out_path);
}

Status write_adapter(const io::Checkpoint& in, const Student& student, const std::string& out_path,
                     const std::string& description) {
  const bool row = !student.trainables().empty() && !student.trainables().front().row_mult.empty();
  std::vector<format::BcqMatrix> tuned;
  std::vector<std::vector<uint16_t>> mult;
  tuned.reserve(student.trainables().size());
  mult.reserve(student.trainables().size());
  std::vector<lutqfile::AdaptedMatrix> matrices;
  for (const TrainableLinear& t : student.trainables()) {
    if (row) {  // the base matrix as the file holds it, and the multipliers
      std::vector<uint16_t>& m = mult.emplace_back(t.row_mult.size());
      for (size_t i = 0; i < m.size(); ++i) m[i] = fp32_to_fp16(t.row_mult[i]);
      matrices.push_back({t.name, &t.codes, &m});
      continue;
    }
    format::BcqMatrix& w = tuned.emplace_back(t.codes);
    if (Status s = store_scales(t.scales, w); !s) return Status(s.code(), t.name + ": " + s.message());
    matrices.push_back({t.name, &w, nullptr});
  }
  return lutqfile::write_adapter(out_path, std::filesystem::path(in.path()).filename().string(), description, matrices);
}

}  // namespace lutq::train
