// Test tool (not installed): the BCQ level-structure experiment of docs/quality.md. Every block
// linear layer of the model is quantized per-OC without an offset, q planes, in one of three
// structures, at equal bits per weight, and the model (run dense over the dequantized weights)
// is scored on the evaluation text:
//   free   α_i per group (today's format): alternating BCQ, g = 128 (64 where 128 does not divide k);
//          scales cost 16·q/g bits per weight.
//   row    α_i = s·β_i: one fp16 scale s per group, the plane ratios β (q values) per row; costs
//          16/g' + 16·q/k, g' the smallest multiple of 8 dividing k that fits the free budget.
//   layer  the same with one β per layer: 16/g'.
// The shared fits alternate: per group, codes (nearest value of s·Σ±β) and s (least squares);
// then β by least squares over the row or the layer; four rounds from β = (1, 1/2, 1/4, ...)
// (the uniform grid). Values are stored as α_i = fp16(s·β_i), which today's format can hold but
// without the bit saving (q scales per group): the experiment asks whether the saving would buy
// quality. Reported: relative weight error, diag(H)-weighted error, perplexity.
//
//   lutq_level_structure MODEL.gguf CALIB.txt EVAL.txt CALIB_CACHE [bits=3] [eval_chunks=20] [variants=free,row,layer]
// eval_chunks 0 skips the perplexity (weight errors only).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/fp16.h"
#include "core/text_file.h"
#include "gen/perplexity.h"
#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "pipeline/calibration.h"
#include "quant/group_fit.h"
#include "quant/quantize.h"

namespace lutq {
namespace {

constexpr int kRounds = 4;      // β updates
constexpr int kGroupRounds = 4;  // code / s alternations per group and round

// The sorted values Σ_i ±β_i and their codes (bit i set: +β_i).
struct UnitGrid {
  quant::detail::ValueGrid grid;
  void build(const std::vector<double>& beta) { grid.build(beta.data(), static_cast<int>(beta.size()), 0.0); }
  int nearest(double x) const { return quant::detail::nearest_index(grid.mids(), grid.size(), x); }
};

// One group w[g] given β: the scale s and codes that alternate to a local minimum of
// Σ (w − s·u(code))². Writes codes; returns s.
double fit_group(const float* w, int64_t g, const UnitGrid& unit, uint8_t* codes) {
  double peak = 0.0;
  for (int64_t j = 0; j < g; ++j) peak = std::max(peak, std::fabs(static_cast<double>(w[j])));
  const double reach = unit.grid.values()[unit.grid.size() - 1];
  double s = peak > 0.0 && reach > 0.0 ? peak / reach : 1.0;
  for (int it = 0; it < kGroupRounds; ++it) {
    double num = 0.0;
    double den = 0.0;
    for (int64_t j = 0; j < g; ++j) {
      const int idx = unit.nearest(w[j] / s);
      codes[j] = unit.grid.codes()[idx];
      const double u = unit.grid.values()[idx];
      num += u * w[j];
      den += u * u;
    }
    if (!(den > 0.0) || !(num > 0.0)) break;
    s = num / den;
  }
  return s;
}

// Adds one group's least-squares terms for β: features f_i = s·(±1 of plane i).
void add_beta_terms(const float* w, int64_t g, double s, const uint8_t* codes, int q, std::vector<double>& a,
                    std::vector<double>& b) {
  for (int64_t j = 0; j < g; ++j) {
    for (int i = 0; i < q; ++i) {
      const double fi = ((codes[j] >> i) & 1u) ? s : -s;
      b[static_cast<size_t>(i)] += fi * w[j];
      for (int l = 0; l < q; ++l) a[static_cast<size_t>(i * q + l)] += fi * (((codes[j] >> l) & 1u) ? s : -s);
    }
  }
}

// Solves a·x = b (q×q, Gaussian elimination); false when singular.
bool solve(std::vector<double> a, std::vector<double> b, int q, std::vector<double>& x) {
  for (int c = 0; c < q; ++c) {
    int p = c;
    for (int r = c + 1; r < q; ++r) p = std::fabs(a[static_cast<size_t>(r * q + c)]) > std::fabs(a[static_cast<size_t>(p * q + c)]) ? r : p;
    if (!(std::fabs(a[static_cast<size_t>(p * q + c)]) > 1e-12)) return false;
    for (int k = 0; k < q; ++k) std::swap(a[static_cast<size_t>(p * q + k)], a[static_cast<size_t>(c * q + k)]);
    std::swap(b[static_cast<size_t>(p)], b[static_cast<size_t>(c)]);
    for (int r = c + 1; r < q; ++r) {
      const double f = a[static_cast<size_t>(r * q + c)] / a[static_cast<size_t>(c * q + c)];
      for (int k = c; k < q; ++k) a[static_cast<size_t>(r * q + k)] -= f * a[static_cast<size_t>(c * q + k)];
      b[static_cast<size_t>(r)] -= f * b[static_cast<size_t>(c)];
    }
  }
  x.assign(static_cast<size_t>(q), 0.0);
  for (int r = q - 1; r >= 0; --r) {
    double v = b[static_cast<size_t>(r)];
    for (int k = r + 1; k < q; ++k) v -= a[static_cast<size_t>(r * q + k)] * x[static_cast<size_t>(k)];
    x[static_cast<size_t>(r)] = v / a[static_cast<size_t>(r * q + r)];
  }
  return std::all_of(x.begin(), x.end(), [](double v) { return std::isfinite(v); });
}

// Rows [r0, r1) of w[n,k] with one β (per_layer) or one per row, groups of g; writes the stored
// values (α_i = fp16(s·β_i), nearest grid value) into out.
void fit_shared(const float* w, int64_t r0, int64_t r1, int64_t k, int64_t g, int q, float* out) {
  std::vector<double> beta(static_cast<size_t>(q));
  for (int i = 0; i < q; ++i) beta[static_cast<size_t>(i)] = std::ldexp(1.0, i - q + 1);
  const int64_t groups = k / g;
  std::vector<double> scale(static_cast<size_t>((r1 - r0) * groups));
  std::vector<uint8_t> codes(static_cast<size_t>((r1 - r0) * k));
  UnitGrid unit;
  for (int round = 0; round <= kRounds; ++round) {
    unit.build(beta);
    std::vector<double> a(static_cast<size_t>(q * q), 0.0);
    std::vector<double> b(static_cast<size_t>(q), 0.0);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float* v = w + r * k + gi * g;
        uint8_t* c = codes.data() + (r - r0) * k + gi * g;
        const double s = fit_group(v, g, unit, c);
        scale[static_cast<size_t>((r - r0) * groups + gi)] = s;
        add_beta_terms(v, g, s, c, q, a, b);
      }
    }
    std::vector<double> next;
    if (round == kRounds || !solve(a, b, q, next)) break;
    double sum = 0.0;
    for (double x : next) sum += std::fabs(x);
    for (int i = 0; i < q; ++i) beta[static_cast<size_t>(i)] = next[static_cast<size_t>(i)] / sum;
  }
  quant::detail::ValueGrid grid;
  std::vector<double> alpha(static_cast<size_t>(q));
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const double s = scale[static_cast<size_t>((r - r0) * groups + gi)];
      for (int i = 0; i < q; ++i) alpha[static_cast<size_t>(i)] = round_to_fp16(static_cast<float>(s * beta[static_cast<size_t>(i)]));
      grid.build(alpha.data(), q, 0.0);
      for (int64_t j = 0; j < g; ++j) {
        const float x = w[r * k + gi * g + j];
        out[r * k + gi * g + j] = static_cast<float>(grid.values()[quant::detail::nearest_index(grid.mids(), grid.size(), x)]);
      }
    }
  }
}

// The group size the free fit uses (128, else 64) and the shared fits' g' at no more bits.
int64_t free_group(int64_t k) { return k % 128 == 0 ? 128 : 64; }
int64_t shared_group(int64_t k, int q, bool per_row) {
  const double budget = 16.0 * q / static_cast<double>(free_group(k)) - (per_row ? 16.0 * q / static_cast<double>(k) : 0.0);
  for (int64_t g = 8; g <= k; g += 8) {
    if (k % g == 0 && 16.0 / static_cast<double>(g) <= budget) return g;
  }
  return k;
}

// Dequantized layer w[n,k] in the variant's structure; *scale_bits gets its scale bits.
std::vector<float> quantize_variant(const std::string& variant, const std::vector<float>& w, int64_t n, int64_t k,
                                    int q, ThreadPool& pool, double* scale_bits) {
  std::vector<float> out(w.size());
  if (variant == "free") {
    const int64_t g = free_group(k);
    quant::QuantOptions opt{quant::Method::kAlternating, format::BcqConfig{q, g, format::Orientation::kPerOC, false}, 10};
    Result<format::BcqMatrix> m = quant::quantize(w.data(), n, k, opt, &pool);
    if (!m) return {};
    *scale_bits = 16.0 * q / static_cast<double>(g) * static_cast<double>(n * k);
    return format::dequantize(*m);
  }
  const bool per_row = variant == "row";
  const int64_t g = shared_group(k, q, per_row);
  *scale_bits = (16.0 / static_cast<double>(g) + (per_row ? 16.0 * q / static_cast<double>(k) : 0.0)) *
                static_cast<double>(n * k);
  if (per_row) {
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) fit_shared(w.data(), r, r + 1, k, g, q, out.data());
    });
  } else {
    fit_shared(w.data(), 0, n, k, g, q, out.data());
  }
  return out;
}

double perplexity(const model::Model& m, const std::vector<int32_t>& tokens, int64_t chunks, int32_t bos,
                  ThreadPool& pool) {
  constexpr int64_t kCtx = 512;
  Result<gen::ChunkPlan> plan = gen::plan_chunks(static_cast<int64_t>(tokens.size()), kCtx, chunks);
  Result<std::unique_ptr<model::Memory>> cache = m.make_memory(kCtx);
  if (!plan || !cache) return NAN;
  const int64_t vocab = m.config().n_vocab;
  std::vector<float> logits(static_cast<size_t>(kCtx * vocab));
  gen::PerplexityAccumulator acc;
  for (int64_t c = 0; c < plan->n_chunks; ++c) {
    const std::vector<int32_t> chunk = gen::chunk_tokens(tokens, *plan, c, bos);
    (*cache)->clear(0);
    if (!m.forward(chunk, 0, **cache, logits.data(), pool, model::LogitsMode::kAll)) return NAN;
    gen::score_chunk(logits, chunk, vocab, *plan, acc, nullptr);
  }
  return acc.perplexity();
}

int fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  return 1;
}

int run(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL CALIB EVAL CALIB_CACHE [bits=3] [eval_chunks=20] [variants]\n", argv[0]);
    return 2;
  }
  const int q = argc > 5 ? std::stoi(argv[5]) : 3;
  const int64_t eval_chunks = argc > 6 ? std::stoll(argv[6]) : 20;
  const std::string variants = argc > 7 ? argv[7] : "free,row,layer";
  Result<std::unique_ptr<io::Checkpoint>> ck = io::open_checkpoint(argv[1]);
  if (!ck) return fail(ck.status());
  ThreadPool pool(2);
  Result<model::Model> model = model::Model::load(**ck, model::LoadOptions{}, pool);
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(**ck);
  Result<std::string> calib_text = read_text_file(argv[2]);
  Result<std::string> eval_text = read_text_file(argv[3]);
  if (!model || !tok || !calib_text || !eval_text) return fail(Status::invalid("cannot load the model or the texts"));
  const int32_t bos = tok->vocab().add_bos ? tok->bos() : -1;
  const std::vector<int32_t> calib = tok->encode(*calib_text, true, false);
  const std::vector<int32_t> eval = tok->encode(*eval_text, true, false);
  // The statistics `lutq quantize --calib-cache` wrote (8192 tokens in chunks of 512).
  const auto chunks = pipeline::calibration_chunks(calib, 512, 8192, bos);
  Result<pipeline::CalibrationStats> stats =
      pipeline::load_calibration(argv[4], pipeline::calibration_fingerprint(**ck, chunks), model->config());
  if (!stats) return fail(stats.status());
  const int64_t n_layer = model->config().n_layer;
  std::vector<std::vector<float>> dense(static_cast<size_t>(n_layer * model::kNumLinearRoles));
  for (int64_t l = 0; l < n_layer; ++l) {
    for (int r = 0; r < model::kNumLinearRoles; ++r) {
      const model::Linear& lin = *model->linear(l, static_cast<model::LinearRole>(r));
      dense[static_cast<size_t>(l * model::kNumLinearRoles + r)].assign(lin.dense_data(), lin.dense_data() + lin.n() * lin.k());
    }
  }
  std::stringstream list(variants);
  for (std::string variant; std::getline(list, variant, ',');) {
    double err = 0.0, energy = 0.0, werr = 0.0, wenergy = 0.0, bits = 0.0, weights = 0.0;
    for (int64_t l = 0; l < n_layer; ++l) {
      for (int r = 0; r < model::kNumLinearRoles; ++r) {
        const auto role = static_cast<model::LinearRole>(r);
        const std::vector<float>& w = dense[static_cast<size_t>(l * model::kNumLinearRoles + r)];
        const int64_t n = model->linear(l, role)->n();
        const int64_t k = model->linear(l, role)->k();
        double sb = 0.0;
        auto deq = std::make_shared<std::vector<float>>(quantize_variant(variant, w, n, k, q, pool, &sb));
        if (deq->size() != w.size()) return fail(Status::invalid("quantization failed"));
        bits += sb + static_cast<double>(q * n * k);
        weights += static_cast<double>(n * k);
        const std::vector<double>& h = stats->hessian(l, role).h();
        for (int64_t i = 0; i < n * k; ++i) {
          const double d = h[static_cast<size_t>((i % k) * k + i % k)];
          const double e = static_cast<double>(w[static_cast<size_t>(i)]) - (*deq)[static_cast<size_t>(i)];
          err += e * e;
          energy += static_cast<double>(w[static_cast<size_t>(i)]) * w[static_cast<size_t>(i)];
          werr += d * e * e;
          wenergy += d * w[static_cast<size_t>(i)] * w[static_cast<size_t>(i)];
        }
        Result<model::Linear> lin = model::Linear::dense(std::move(deq), n, k, model->ops().isa);
        if (!lin) return fail(lin.status());
        if (Status s = model->replace_linear(l, role, std::move(*lin)); !s) return fail(s);
      }
    }
    const double ppl = eval_chunks > 0 ? perplexity(*model, eval, eval_chunks, bos, pool) : NAN;  // 0: skip
    std::printf("%-6s q=%d: %.3f bpw, rel. weight error %.4f, diag(H)-weighted %.4f, PPL %.2f (%lld chunks)\n",
                variant.c_str(), q, bits / weights, std::sqrt(err / energy), std::sqrt(werr / wenergy), ppl,
                static_cast<long long>(eval_chunks));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace lutq

int main(int argc, char** argv) { return lutq::run(argc, argv); }
