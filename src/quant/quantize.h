// Quantizers: fit a float matrix W[n,k] (row-major; n output rows, k input columns) into the
// canonical BCQ form W ≈ Σ_{i<q} α_i·B_i (+ z), B_i ∈ {−1,+1} (format/bcq_matrix.h).
//
// A group is g consecutive weights along k inside one row (per-OC) or g consecutive rows inside
// one column (per-IC); every group is fitted on its own and gets q scales α and, with an offset,
// one z. The 2^q values a group can take are its grid: z + Σ_i ±α_i.
//
//   RTN (uniform asymmetric, stored as BCQ). A q-bit uniform code c ∈ {0..2^q−1} with step s is
//     BCQ with α_i = s·2^(i−1) (plane 0 least significant): z + s·(c − (2^q−1)/2) = z + Σ α_i·B_i
//     where B_i = 2·bit_i(c) − 1. The centre z is the fp16 rounding of (min+max)/2; the step is
//     the smallest fp16-exact s (α_0 = s/2 fp16, α_i = α_0·2^i exact) whose grid still covers
//     [min, max] around that centre; each weight takes its nearest grid point. RTN always stores
//     an offset: quantize() sets has_offset = true for it. (fit_group without an offset fits a
//     symmetric grid around 0 instead.)
//   Greedy. z = fp16(mean) with an offset, else 0; r = v − z; for each plane i: B_i = sign(r)
//     (sign(0) = +1), α_i = mean|r|, r −= α_i·B_i. Those scales are means over the whole group,
//     so the grid's reach z ± Σα_i stays within a few typical magnitudes and clips outliers
//     (SmolLM2 collapsed to PPL 6.7e5). The stored greedy fit never clips: the planes are kept
//     only where their reach covers every weight (to within one smallest step) and their error
//     is below the RTN grid's (the greedy expansion with range-halving scales); otherwise the
//     group gets the RTN grid (symmetric around 0 without an offset).
//   Alternating (default). Repeats, up to `iterations` rounds or until the squared error stops
//     falling: (a) least squares for α (and z) given the bits — the q×q ((q+1)×(q+1) with an
//     offset) normal equations in double, Gaussian elimination with partial pivoting; a singular
//     system ends the rounds; (b) every weight takes the nearest of the 2^q grid values given α
//     (α may come out negative or unsorted; the grid is enumerated and sorted). Rounds run on the
//     sorted group with prefix sums, so one round costs O(2^q·log g), not O(g·q).
//     Hard assignment makes this a local search whose result depends on the start, so it runs
//     from several: the greedy fit, and geometric grids α_{q−1−j} ∝ r^j spanning [min, max]
//     (r = 0.5 is the uniform grid; r in {0.35, 0.5, ..., 0.9} for q <= 4, fewer for larger q).
//     The best result replaces the greedy fit only if it is no worse after fp16 rounding, so
//     alternating never loses to greedy; it also starts from the uniform grid and so rarely
//     loses to RTN.
//
// Importance weighting (an optional importance d[k] per input channel, e.g. diag of the
// calibration second moment H = Σ x xᵀ): every fit then minimises Σ_j d_j (w_j − ŵ_j)² over its
// group. Greedy and alternating use weighted means and weighted least squares for α (and z); the
// code of each weight stays its nearest grid value (d_j > 0 scales its own term only). RTN tries
// uniform grids over narrower ranges and weighted least-squares refits, keeping the lowest
// weighted error (never above plain RTN's). Per-IC groups lie in one input channel: a constant
// weight, so the fit is the unweighted one. Equal weights give today's unweighted fit exactly.
//
// Compressed scales (opt.scale_bits 4..8): after the fp16 fit, quant::compress_scales
// (scale_fit.h) codes the scales and re-chooses codes and bits against the decoded grids.
//
// Scales and offsets are stored as fp16. Every method fits in float/double, rounds α and z to
// fp16 and then re-chooses each weight's bits against the rounded values (nearest grid value,
// found by binary search over the sorted grid), so format::dequantize() reproduces exactly the
// grid points the fit chose. Results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "core/status.h"
#include "format/bcq_matrix.h"

namespace lutq {
class ThreadPool;
}  // namespace lutq

namespace lutq::quant {

enum class Method { kRtn, kGreedy, kAlternating };

// "rtn", "greedy", "alternating".
const char* method_name(Method method);
Result<Method> parse_method(std::string_view name);

struct QuantOptions {
  Method method = Method::kAlternating;
  format::BcqConfig cfg;
  int iterations = 10;  // alternating rounds (>= 0); ignored by rtn and greedy
  // Callers with calibration statistics pass their importance (diag H) to the fit when set
  // (pipeline::quantize_layer, quant::choose_orientation); quantize() itself weighs whenever it is
  // given an importance.
  bool importance = false;
  // 0: fp16 scales and offsets. 4..8: compressed scales (format/scale_codes.h) of this many bits;
  // the bits are chosen against the decoded scales (quant/scale_fit.h).
  int scale_bits = 0;
  // Clipping (per-OC only; quant/clip_search.h chooses it per row): each group is fitted on its
  // values clamped to its range shrunk toward its centre, [c − clip·h, c + clip·h] with
  // c = (min + max)/2 and h = (max − min)/2; every weight (clipped or not) then takes the nearest
  // value of that fitted grid. 1: no clipping (the plain fit, bit for bit). In (0, 1].
  double clip = 1.0;
};

// Quantizes w[n*k] (row-major). Rejects a bad shape or config (format::validate_config), a
// negative iteration count, and a non-finite weight or one beyond the fp16 range (the message
// names its row and column). With a pool the groups are split over its threads. importance: empty
// (unweighted) or k finite values >= 0, the weight of each input channel's squared error.
Result<format::BcqMatrix> quantize(const float* w, int64_t n, int64_t k, const QuantOptions& opt,
                                   ThreadPool* pool = nullptr, std::span<const double> importance = {});

// Fits one group vector v[len] (len >= 1, finite values) with q planes (1..8). Writes alpha[q]
// (fp16-representable floats), *offset (0 when !with_offset, else fp16-representable) and
// signs[i*len + j] ∈ {0,1} (1 means B_i[j] = +1). Every element takes a nearest value of the
// group's grid given the written alpha/offset. `iterations` matters only for alternating.
// weight[len] (nullable, finite, >= 0): minimise Σ weight_j·(v_j − ŵ_j)² instead.
void fit_group(const float* v, int64_t len, int q, Method method, bool with_offset, int iterations,
               float* alpha, float* offset, uint8_t* signs, const double* weight = nullptr);

}  // namespace lutq::quant
