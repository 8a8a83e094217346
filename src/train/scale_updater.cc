#include "train/scale_updater.h"

#include "core/fp16.h"

namespace lutq::train {
namespace {

// α = α0·m per scale set and plane.
void set_row_scales(TrainableLinear& t, const std::vector<float>& base) {
  const int q = t.codes.cfg.q;
  for (int64_t set = 0; set < t.codes.num_scale_sets(); ++set) {
    const auto line = static_cast<size_t>(lutqfile::scale_line(t.codes, set));
    for (int i = 0; i < q; ++i) {
      const auto a = static_cast<size_t>(set * q + i);
      t.scales.alpha[a] = base[a] * t.row_mult[line * static_cast<size_t>(q) + static_cast<size_t>(i)];
    }
  }
}

}  // namespace

ScaleUpdater::ScaleUpdater(Student& st, lutqfile::AdapterKind kind, const AdamWOptions& adam) : kind_(kind) {
  for (TrainableLinear& t : st.trainables()) {
    if (kind_ == lutqfile::AdapterKind::kFull) {
      alpha_opt_.emplace_back(t.scales.alpha.size(), adam);
      offset_opt_.emplace_back(t.scales.offset.size(), adam);
      continue;
    }
    t.row_mult.assign(static_cast<size_t>(lutqfile::scale_lines(t.codes) * t.codes.cfg.q), 1.0f);
    base_.push_back(t.scales.alpha);
    alpha_opt_.emplace_back(t.row_mult.size(), adam);
  }
}

Status ScaleUpdater::step(Student& st) {
  std::vector<TrainableLinear>& ts = st.trainables();
  for (size_t k = 0; k < ts.size(); ++k) {
    TrainableLinear& t = ts[k];
    if (kind_ == lutqfile::AdapterKind::kFull) {
      if (Status s = alpha_opt_[k].step(t.scales.alpha, t.grad.alpha); !s) return Status(s.code(), t.name + ": " + s.message());
      if (Status s = offset_opt_[k].step(t.scales.offset, t.grad.offset); !s) return Status(s.code(), t.name + ": " + s.message());
      continue;
    }
    const int q = t.codes.cfg.q;
    grad_.assign(t.row_mult.size(), 0.0f);
    for (int64_t set = 0; set < t.codes.num_scale_sets(); ++set) {
      const auto line = static_cast<size_t>(lutqfile::scale_line(t.codes, set));
      for (int i = 0; i < q; ++i) {
        const auto a = static_cast<size_t>(set * q + i);
        grad_[line * static_cast<size_t>(q) + static_cast<size_t>(i)] += base_[k][a] * t.grad.alpha[a];
      }
    }
    if (Status s = alpha_opt_[k].step(t.row_mult, grad_); !s) return Status(s.code(), t.name + ": " + s.message());
    set_row_scales(t, base_[k]);
  }
  return Status::ok();
}

namespace {

// The tensors one trainable's optimizers work on, with their names in a checkpoint.
struct Slot {
  std::string name;
  std::vector<float>* params;
  AdamW* opt;
};

}  // namespace

std::vector<TuneState::Tensor> ScaleUpdater::save(const Student& st) const {
  std::vector<TuneState::Tensor> out;
  const std::vector<TrainableLinear>& ts = st.trainables();
  for (size_t k = 0; k < ts.size(); ++k) {
    const bool full = kind_ == lutqfile::AdapterKind::kFull;
    const std::pair<const char*, const std::vector<float>*> parts[] = {
        {full ? ".alpha" : ".row", full ? &ts[k].scales.alpha : &ts[k].row_mult},
        {".offset", full ? &ts[k].scales.offset : nullptr}};
    for (size_t p = 0; p < 2; ++p) {
      if (parts[p].second == nullptr || parts[p].second->empty()) continue;
      const AdamW& opt = p == 0 ? alpha_opt_[k] : offset_opt_[k];
      out.push_back({ts[k].name + parts[p].first, *parts[p].second,
                     std::vector<double>(opt.first_moment().begin(), opt.first_moment().end()),
                     std::vector<double>(opt.second_moment().begin(), opt.second_moment().end())});
    }
  }
  return out;
}

Status ScaleUpdater::restore(Student& st, const std::vector<TuneState::Tensor>& saved, int64_t steps) {
  std::vector<TrainableLinear>& ts = st.trainables();
  std::vector<Slot> slots;
  for (size_t k = 0; k < ts.size(); ++k) {
    if (kind_ == lutqfile::AdapterKind::kRow) {
      slots.push_back({ts[k].name + ".row", &ts[k].row_mult, &alpha_opt_[k]});
      continue;
    }
    slots.push_back({ts[k].name + ".alpha", &ts[k].scales.alpha, &alpha_opt_[k]});
    if (!ts[k].scales.offset.empty()) slots.push_back({ts[k].name + ".offset", &ts[k].scales.offset, &offset_opt_[k]});
  }
  if (slots.size() != saved.size()) {
    return Status::invalid("the checkpoint holds " + std::to_string(saved.size()) + " trained tensors, this run has " +
                           std::to_string(slots.size()));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    if (saved[i].name != slots[i].name || saved[i].params.size() != slots[i].params->size()) {
      return Status::invalid("the checkpoint's tensor " + std::to_string(i) + " is '" + saved[i].name + "' of " +
                             std::to_string(saved[i].params.size()) + " values; this run's is '" + slots[i].name +
                             "' of " + std::to_string(slots[i].params->size()));
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    if (Status s = slots[i].opt->restore(saved[i].m, saved[i].v, steps); !s) return Status(s.code(), slots[i].name + ": " + s.message());
    *slots[i].params = saved[i].params;
  }
  if (kind_ == lutqfile::AdapterKind::kRow) {
    for (size_t k = 0; k < ts.size(); ++k) set_row_scales(ts[k], base_[k]);
  }
  return Status::ok();
}

void ScaleUpdater::finish(Student& st) const {
  if (kind_ != lutqfile::AdapterKind::kRow) return;
  std::vector<TrainableLinear>& ts = st.trainables();
  for (size_t k = 0; k < ts.size(); ++k) {
    for (float& m : ts[k].row_mult) m = fp16_to_fp32(fp32_to_fp16(m));
    set_row_scales(ts[k], base_[k]);
  }
}

}  // namespace lutq::train
