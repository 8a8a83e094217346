#include "model/adapter_rows.h"

#include <algorithm>

namespace lutq::model {
namespace {

// The adapters the rows name, in order of first appearance.
std::vector<int32_t> adapters_in(std::span<const BatchRow> rows) {
  std::vector<int32_t> ids;
  for (const BatchRow& r : rows) {
    if (std::find(ids.begin(), ids.end(), r.adapter) == ids.end()) ids.push_back(r.adapter);
  }
  return ids;
}

// Whether any of the adapters `ids` changes `lin`.
bool changed_by(const Linear& lin, std::span<const int32_t> ids) {
  return std::any_of(ids.begin(), ids.end(), [&](int32_t a) { return &lin.adapted(a) != &lin; });
}

// Runs adapter a's versions of `lins` on the rows of `rows` that name a: gathered, multiplied,
// scattered back into outs.
Status run_group(std::span<const Linear* const> lins, std::span<float* const> outs, int32_t a,
                 std::span<const BatchRow> rows, const float* in, ThreadPool& pool, AdapterScratch& s) {
  const int64_t k = lins[0]->k();
  std::vector<int64_t> picked;
  for (size_t t = 0; t < rows.size(); ++t) {
    if (rows[t].adapter == a) picked.push_back(static_cast<int64_t>(t));
  }
  const auto mg = static_cast<int64_t>(picked.size());
  s.in.resize(static_cast<size_t>(mg * k));
  for (int64_t i = 0; i < mg; ++i) std::copy_n(in + picked[static_cast<size_t>(i)] * k, k, s.in.data() + i * k);
  std::vector<const Linear*> mine;
  std::vector<float*> ys;
  s.out.resize(lins.size());
  for (size_t j = 0; j < lins.size(); ++j) {
    mine.push_back(&lins[j]->adapted(a));
    s.out[j].resize(static_cast<size_t>(mg * lins[j]->n()));
    ys.push_back(s.out[j].data());
  }
  if (Status st = Linear::forward_shared(mine, s.in.data(), mg, ys, pool); !st) return st;
  for (size_t j = 0; j < lins.size(); ++j) {
    const int64_t n = lins[j]->n();
    for (int64_t i = 0; i < mg; ++i) std::copy_n(ys[j] + i * n, n, outs[j] + picked[static_cast<size_t>(i)] * n);
  }
  return Status::ok();
}

}  // namespace

Status forward_by_adapter(std::span<const Linear* const> lins, std::span<const BatchRow> rows, const float* in,
                          std::span<float* const> outs, ThreadPool& pool, AdapterScratch& scratch) {
  const auto m = static_cast<int64_t>(rows.size());
  const bool any = std::any_of(lins.begin(), lins.end(), [](const Linear* l) { return l->has_adapters(); });
  if (!any || lins.size() != outs.size() || m < 1) return Linear::forward_shared(lins, in, m, outs, pool);
  const std::vector<int32_t> ids = adapters_in(rows);
  if (ids.size() == 1) {
    std::vector<const Linear*> mine;
    for (const Linear* l : lins) mine.push_back(&l->adapted(ids[0]));
    return Linear::forward_shared(mine, in, m, outs, pool);
  }
  // Layers none of the batch's adapters change run once over all rows; the others per adapter.
  std::vector<const Linear*> plain, split;
  std::vector<float*> plain_out, split_out;
  for (size_t j = 0; j < lins.size(); ++j) {
    const bool changed = changed_by(*lins[j], ids);
    (changed ? split : plain).push_back(lins[j]);
    (changed ? split_out : plain_out).push_back(outs[j]);
  }
  if (!plain.empty()) {
    if (Status s = Linear::forward_shared(plain, in, m, plain_out, pool); !s) return s;
  }
  for (int32_t a : ids) {
    if (Status s = run_group(split, split_out, a, rows, in, pool, scratch); !s) return s;
  }
  return Status::ok();
}

}  // namespace lutq::model
