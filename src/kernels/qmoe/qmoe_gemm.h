// The QMoE kernel: y[m,n] = x[m,k] · W[n,k]^T for a QMoE-coded ternary matrix
// (format/qmoe_code.h), decoding the codewords on the fly: each codeword is one table lookup
// giving a run of up to 32 symbols as a +1 mask, a −1 mask and a length, and the run adds the
// masked activations to a row's "+" and "−" sums. No dequantized copy of W is ever made.
//
//   spec (scalar): per row r and activation row t, in symbol order,
//       P = Σ_{c: t_rc=+1} x_c,  N = Σ_{c: t_rc=−1} x_c  (fp32, left to right),  y = s_r · (P − N)
//   avx2 / avx512: the same sums in SIMD lanes (another summation order), within the bound of
//       docs/kernels.md, "QMoE kernel". m is taken in tiles of up to 4 activation rows, each
//       decoded codeword serving the whole tile.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/cpu.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "format/bcq_matrix.h"
#include "format/qmoe_code.h"
#include "kernels/kernel.h"

namespace lutq::kernels {

// The runtime form of a dictionary, shared by every matrix coded with it.
struct QmoeTable {
  std::shared_ptr<const format::QmoeDictionary> dict;
  std::vector<uint64_t> masks;  // pos | neg << 32, one per codeword
  std::vector<uint8_t> len;
};

// Validates the dictionary and builds its table.
Result<std::shared_ptr<const QmoeTable>> make_qmoe_table(std::shared_ptr<const format::QmoeDictionary> dict);

struct QmoeWeights {
  std::shared_ptr<const format::QmoeMatrix> m;
  std::shared_ptr<const QmoeTable> table;  // built from m->dict
  std::vector<float> scale;  // [n], the fp16 scales widened
  int64_t n() const { return m->n; }
  int64_t k() const { return m->k; }
  // Codes, row offsets and scales (the shared table not counted).
  int64_t weight_bytes() const;
};

// Pairs m with `table` (made here when null; an error when it is not the table of m's
// dictionary). Precondition: m is valid (format::validate), as every producer returns it:
// format::matrix_from_bytes (so lutqfile::read_qmoe, which names the file and tensor in its
// errors) and format::encode. The full check walks every codeword, so it is made there once, not
// again here; this refuses only what is cheap to see (no matrix or dictionary, a scale count
// other than n), and a debug build re-validates.
Result<QmoeWeights> make_qmoe_weights(std::shared_ptr<const format::QmoeMatrix> m,
                                      std::shared_ptr<const QmoeTable> table = nullptr);

// Whether this CPU runs the QMoE kernel of `isa` (ref and scalar: always; avx2; avx512 needs F/BW/DQ/VL).
bool qmoe_available(Isa isa, const CpuFeatures& cpu);

// y[m,n] = x[m,k] · W^T, x rows of stride k, y rows of stride n, m >= 1. isa kRef and kScalar
// run the scalar spec; kCuda is refused. Error: an ISA the CPU lacks, m < 1. From
// kQmoeLutFromRows activation rows, avx2 and avx512 decode W once into the BCQ matrix it equals
// (qmoe_as_bcq) and run the exact-table LUT kernels on it (qmoe_gemm_lut): the codeword walk is
// paid once per call instead of once per 4 rows (docs/kernels.md, "QMoE kernel").
Status qmoe_gemm(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa);
// The same with the CPU's features kept by the caller: detect_cpu() runs cpuid, which a virtual
// machine traps, and per decode call it cost twice the kernel itself (a converted SmolLM2 MoE).
Status qmoe_gemm(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa,
                 const CpuFeatures& cpu);
constexpr int64_t kQmoeLutFromRows = 8;

// W as BCQ: q = 2, one group per row (g = k), per-OC, no offset; plane 0 the +1 symbols, plane
// 1 the complement of the −1 symbols, α_0 = α_1 = fp16(s_r / 2), so that Σ_i α_i·B_i = s_r·t.
// Rows split over `pool` where given.
format::BcqMatrix qmoe_as_bcq(const QmoeWeights& w, ThreadPool* pool = nullptr);
// y = x · W^T through qmoe_as_bcq and BcqLinear (exact tables, LUT path, backend isa). Error
// bound: the LUT kernels' exact-table bound with α_0 + α_1 = s_r (docs/kernels.md). Returns
// false, computing nothing, where that backend refuses the shape.
Result<bool> qmoe_gemm_lut(const QmoeWeights& w, const float* x, int64_t m, float* y, ThreadPool& pool, Isa isa,
                           const CpuFeatures* cpu = nullptr);

}  // namespace lutq::kernels
