// Per-request scale adapters inside one batch: each row names the adapter it runs with
// (BatchRow::adapter, 0 = the model's own scales), and a layer that adapters change runs each
// adapter's rows through that adapter's version of the layer (Linear::adapted). Rows of one
// adapter stay one GEMM; layers no row's adapter changes run once over every row.
#pragma once

#include <span>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/batch.h"
#include "model/linear.h"

namespace lutq::model {

// Working space of forward_by_adapter, reused across the layers of one pass.
struct AdapterScratch {
  std::vector<float> in;
  std::vector<std::vector<float>> out;
};

// outs[j][m][n_j] = in[m][k] · W_j^T (+ bias_j) for layers that read the same input, where row t
// uses lins[j]->adapted(rows[t].adapter). Equal to Linear::forward_shared on the rows of each
// adapter taken alone (bit for bit where the layer's kernel treats rows independently, as the
// LUT kernels do). Without adapters in play it is Linear::forward_shared itself.
Status forward_by_adapter(std::span<const Linear* const> lins, std::span<const BatchRow> rows, const float* in,
                          std::span<float* const> outs, ThreadPool& pool, AdapterScratch& scratch);

}  // namespace lutq::model
