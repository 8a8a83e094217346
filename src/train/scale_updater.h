// How `lutq tune` moves a student's scales each step (issue 14). Full: AdamW on every scale and
// offset. Row (AlphaTuning over a grouped matrix): the file's scales α0 stay as they are and one
// multiplier m per scale line and plane is trained, α[s·q + i] = α0[s·q + i]·m[line(s)·q + i]
// (lines: rows per-OC, columns per-IC; lutqfile/adapter.h), offsets frozen; its gradient is
// dL/dm[l·q + i] = Σ_{s in line l} α0[s·q + i]·dL/dα[s·q + i].
#pragma once

#include <vector>

#include "core/status.h"
#include "lutqfile/adapter.h"
#include "train/tune_state.h"
#include "train/adamw.h"
#include "train/student.h"

namespace lutq::train {

class ScaleUpdater {
 public:
  // Row: sets every trainable's row_mult to 1 (its scales unchanged).
  ScaleUpdater(Student& st, lutqfile::AdapterKind kind, const AdamWOptions& adam);
  // One optimizer step from the gradients the student accumulated; updates the scales (then
  // call st.refresh()). Error: a non-finite gradient, naming the layer.
  Status step(Student& st);
  // Row: rounds the multipliers to fp16 and sets α = α0·m from them, so the written file and the
  // adapter hold the same model. Full: nothing.
  void finish(Student& st) const;
  // The optimized tensors' fp32 parameters and AdamW moments, for a checkpoint (tune_state.h),
  // named "<matrix>.alpha" / ".offset" (full) or "<matrix>.row" (row multipliers).
  std::vector<TuneState::Tensor> save(const Student& st) const;
  // Puts a checkpoint's parameters and moments back (the scales follow from them) after `steps`
  // optimizer steps. Error (nothing changed): tensors of other names or sizes than this run's.
  Status restore(Student& st, const std::vector<TuneState::Tensor>& saved, int64_t steps);

 private:
  lutqfile::AdapterKind kind_;
  std::vector<AdamW> alpha_opt_, offset_opt_;  // full: per trainable; row: alpha_opt_ on row_mult
  std::vector<std::vector<float>> base_;       // row: α0 per trainable
  std::vector<float> grad_;                    // row: scratch for dL/dm
};

}  // namespace lutq::train
