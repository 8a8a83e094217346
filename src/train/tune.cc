// tune() and write_tuned() (tune.h).
#include "train/tune.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>

#include "core/fp16.h"
#include "io/gguf_writer.h"
#include "lutqfile/adapter.h"
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

}  // namespace

Result<TuneReport> tune(Student& student, std::span<const int32_t> tokens, const TuneOptions& opts,
                        const TeacherFn& teacher, const std::function<void(const TuneProgress&)>& progress) {
  if (Status s = check_options(opts, int64_t(tokens.size())); !s) return s;
  AdamWOptions adam = opts.adam;
  adam.total_steps = std::max<int64_t>(opts.steps, 1);
  adam.warmup_steps = std::min(adam.warmup_steps, adam.total_steps);
  if (Status s = validate(adam); !s) return s;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n_seq = int64_t(tokens.size()) / opts.ctx;
  const int64_t n_held = std::max<int64_t>(1, int64_t(double(n_seq) * opts.held_out));
  TuneReport report;
  report.train_sequences = n_seq - n_held;
  report.held_out_sequences = n_held;
  std::vector<int64_t> train(static_cast<size_t>(n_seq - n_held)), held(static_cast<size_t>(n_held));
  std::iota(train.begin(), train.end(), 0);
  std::iota(held.begin(), held.end(), n_seq - n_held);
  Result<double> before = mean_loss(student, tokens, held, opts.ctx, opts.loss, teacher);
  if (!before) return before.status();
  report.held_out_before = *before;
  ScaleUpdater updater(student, opts.kind, adam);
  std::mt19937 rng(opts.seed);
  std::vector<float> t_logits;
  int64_t next = 0;  // sequences drawn so far
  for (int64_t step = 0; step < opts.steps; ++step) {
    student.zero_grad();
    double step_loss = 0.0;
    for (int64_t b = 0; b < opts.batch; ++b, ++next) {
      if (next % int64_t(train.size()) == 0) std::shuffle(train.begin(), train.end(), rng);
      const int64_t s = train[static_cast<size_t>(next % int64_t(train.size()))];
      const std::span<const int32_t> seq =
          tokens.subspan(static_cast<size_t>(s * opts.ctx), static_cast<size_t>(opts.ctx));
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
    if (progress) {
      progress({step + 1, opts.steps, step_loss, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    }
  }
  updater.finish(student);
  student.refresh();
  Result<double> after = mean_loss(student, tokens, held, opts.ctx, opts.loss, teacher);
  if (!after) return after.status();
  report.held_out_after = *after;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
  for (const std::string& key : in.keys()) {
    if (key.starts_with("lutq.tune.")) continue;
    if (Status s = out.add(key, *in.find(key)); !s) return Status(s.code(), out_path + ": " + s.message());
  }
  if (Status s = out.add_string("lutq.tune.description", description); !s) return s;
  for (const io::TensorInfo& info : in.tensors()) {
    std::span<const uint8_t> bytes = in.tensor_bytes(info);
    std::vector<uint8_t> tuned;
    for (const std::string_view suffix : {std::string_view(".bcq_alpha"), std::string_view(".bcq_offset")}) {
      if (!info.name.ends_with(suffix)) continue;
      const auto it = by_name.find(std::string_view(info.name).substr(0, info.name.size() - suffix.size()));
      if (it == by_name.end()) continue;
      format::BcqMatrix w = it->second->codes;
      if (Status s = store_scales(it->second->scales, w); !s) return Status(s.code(), it->first + ": " + s.message());
      const std::vector<uint16_t>& h = suffix == ".bcq_alpha" ? w.alpha : w.offset;
      tuned.assign(reinterpret_cast<const uint8_t*>(h.data()), reinterpret_cast<const uint8_t*>(h.data() + h.size()));
      if (tuned.size() != bytes.size()) return Status::invalid(info.name + ": tuned size differs from the stored one");
      bytes = tuned;
    }
    if (Status s = out.add_tensor(info.name, info.dims, info.type, bytes); !s) return Status(s.code(), out_path + ": " + s.message());
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
