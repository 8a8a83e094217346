// Test tool (not installed): the QMoE figures on a real dense model's FFN matrices. Calibrates
// the dense model on a text, quantizes every block's ffn_gate / ffn_up / ffn_down to ternary
// (RTN or GPTQ-ternary, quant/ternary.h) per configuration, builds one QMoE dictionary over all of
// them (format/qmoe_code.h), codes every matrix with it, and reports the zero fraction, bits per
// parameter (codes alone; codes + row offsets + scales; with the dictionary), the calibrated
// error, and the llama.cpp-protocol perplexity with those layers replaced by their ternary values.
//
//   lutq_qmoe_eval MODEL.gguf CALIB.txt EVAL.txt [calib_tokens=4096] [eval_chunks=10]
//                  [configs=dense,rtn-mse,rtn-maxabs,gptq-mse,gptq-maxabs,rtn-mse-z0.9]
// A configuration is {rtn|gptq}-{mse|maxabs}[-zF][-act]: -zF asks the mse grid for at least a
// share F of zeros per row, -act runs GPTQ in act_order.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/text_file.h"
#include "format/qmoe_code.h"
#include "gen/perplexity.h"
#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "pipeline/calibration.h"
#include "quant/gptq.h"
#include "quant/ternary.h"

namespace lutq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }


struct Config {
  bool gptq = false;
  bool act_order = false;
  quant::TernaryOptions opt;
};

Result<Config> parse_config(const std::string& s) {
  Config c;
  std::stringstream in(s);
  std::string part;
  std::getline(in, part, '-');
  if (part != "rtn" && part != "gptq") return Status::invalid("config " + s + ": rtn or gptq first");
  c.gptq = part == "gptq";
  std::getline(in, part, '-');
  if (part != "mse" && part != "maxabs") return Status::invalid("config " + s + ": mse or maxabs second");
  c.opt.scale = part == "mse" ? quant::TernaryScale::kMse : quant::TernaryScale::kMaxAbs;
  while (std::getline(in, part, '-')) {
    if (part == "act") {
      c.act_order = true;
    } else if (part.size() > 1 && part[0] == 'z') {
      c.opt.min_zero_fraction = std::stod(part.substr(1));
    } else {
      return Status::invalid("config " + s + ": unknown part " + part);
    }
  }
  return c;
}

Result<double> perplexity(const model::Model& m, const std::vector<int32_t>& tokens, int64_t ctx, int64_t chunks,
                          int32_t bos, ThreadPool& pool) {
  Result<gen::ChunkPlan> plan = gen::plan_chunks(static_cast<int64_t>(tokens.size()), ctx, chunks);
  if (!plan) return plan.status();
  Result<std::unique_ptr<model::Memory>> memory = m.make_memory(ctx);
  if (!memory) return memory.status();
  const int64_t V = m.config().n_vocab;
  std::vector<float> logits(static_cast<size_t>(ctx * V));
  gen::PerplexityAccumulator acc;
  for (int64_t c = 0; c < plan->n_chunks; ++c) {
    const std::vector<int32_t> chunk = gen::chunk_tokens(tokens, *plan, c, bos);
    (*memory)->clear(0);
    if (Status s = m.forward(chunk, 0, **memory, logits.data(), pool, model::LogitsMode::kAll); !s) return s;
    gen::score_chunk(logits, chunk, V, *plan, acc, nullptr);
  }
  return acc.perplexity();
}

struct Totals {
  int64_t params = 0, zeros = 0, codes = 0, rows = 0;
  double err = 0.0, err_base = 0.0;
};

// Quantizes every FFN matrix per `cfg`, codes them with one dictionary, replaces the layers.
Status run_config(model::Model& model, const std::vector<std::vector<float>>& dense, const pipeline::CalibrationStats& stats,
                  const Config& cfg, ThreadPool& pool, Totals& tot) {
  const int64_t n_layer = model.config().n_layer;
  std::vector<format::TernaryMatrix> tern;
  for (int64_t l = 0; l < n_layer; ++l) {
    std::optional<quant::GptqFactor> factor;  // gate and up share their input
    for (int64_t ri = 0; ri < 3; ++ri) {
      const model::LinearRole role = model::kFfnRoles[ri];
      const std::vector<float>& w = dense[static_cast<size_t>(l * 3 + ri)];
      const model::Linear& lin = *model.linear(l, role);
      const double* h = stats.hessian(l, role).h().data();
      Result<format::TernaryMatrix> q = Status::invalid("unset");
      if (cfg.gptq) {
        if (!factor || role == model::LinearRole::kFfnDown) {
          quant::GptqOptions gopt;
          gopt.act_order = cfg.act_order;
          Result<quant::GptqFactor> f = quant::prepare_gptq(h, lin.k(), gopt);
          if (!f) return f.status();
          factor = std::move(*f);
        }
        q = quant::ternary_gptq(w.data(), lin.n(), lin.k(), *factor, cfg.opt, &pool);
      } else {
        q = quant::ternary_rtn(w.data(), lin.n(), lin.k(), cfg.opt, &pool);
      }
      if (!q) return q.status();
      const double rows = static_cast<double>(stats.hessian(l, role).rows());
      const double err = quant::ternary_calibrated_error(w.data(), *q, h) / rows;
      format::TernaryMatrix zero{q->n, q->k, std::vector<int8_t>(q->t.size(), 0), q->scale};
      const double base = quant::ternary_calibrated_error(w.data(), zero, h) / rows;
      tot.err += err;
      tot.err_base += base;
      std::fprintf(stderr, "\n    blk.%lld.%s rel. error %.4f (output energy %.4g)", static_cast<long long>(l),
                   model::role_name(role), err / base, base);
      tern.push_back(std::move(*q));
    }
    std::fprintf(stderr, "\r  quantized block %lld/%lld", static_cast<long long>(l + 1), static_cast<long long>(n_layer));
  }
  std::vector<const format::TernaryMatrix*> ptrs;
  for (const format::TernaryMatrix& t : tern) ptrs.push_back(&t);
  format::DictionaryOptions dopt;
  dopt.row_stride = 4;
  const auto t0 = Clock::now();
  Result<format::QmoeDictionary> dict = format::build_dictionary(ptrs, dopt);
  if (!dict) return dict.status();
  auto shared = std::make_shared<const format::QmoeDictionary>(std::move(*dict));
  std::fprintf(stderr, "\n  dictionary: %lld entries in %.1f s\n", static_cast<long long>(shared->size()), since(t0));
  for (size_t i = 0; i < tern.size(); ++i) {
    Result<format::QmoeMatrix> q = format::encode(tern[i], shared);
    if (!q) return q.status();
    tot.params += q->n * q->k;
    tot.codes += static_cast<int64_t>(q->codes.size());
    tot.rows += q->n;
    tot.zeros += static_cast<int64_t>(tern[i].zero_fraction() * static_cast<double>(tern[i].t.size()) + 0.5);
    const auto l = static_cast<int64_t>(i / 3);
    auto deq = std::make_shared<const std::vector<float>>(format::dequantize(tern[i]));
    Result<model::Linear> lin = model::Linear::dense(deq, q->n, q->k, model.ops().isa);
    if (!lin) return lin.status();
    if (Status s = model.replace_linear(l, model::kFfnRoles[i % 3], std::move(*lin)); !s) return s;
  }
  std::printf("  dictionary %lld entries (%lld bytes)\n", static_cast<long long>(shared->size()),
              static_cast<long long>(shared->storage_bytes()));
  return Status::ok();
}

int run(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL CALIB EVAL [calib_tokens] [eval_chunks] [configs]\n", argv[0]);
    return 2;
  }
  const int64_t calib_tokens = argc > 4 ? std::stoll(argv[4]) : 4096;
  const int64_t eval_chunks = argc > 5 ? std::stoll(argv[5]) : 10;
  const std::string configs = argc > 6 ? argv[6] : "dense,rtn-mse,rtn-maxabs,gptq-mse,gptq-maxabs,rtn-mse-z0.9";
  const int64_t ctx = 512;
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  };
  Result<std::unique_ptr<io::Checkpoint>> ck = io::open_checkpoint(argv[1]);
  if (!ck) return fail(ck.status());
  ThreadPool pool(2);
  Result<model::Model> model = model::Model::load(**ck, model::LoadOptions{}, pool);
  if (!model) return fail(model.status());
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(**ck);
  if (!tok) return fail(tok.status());
  const int32_t bos = tok->vocab().add_bos ? tok->bos() : -1;
  Result<std::string> calib_text = read_text_file(argv[2]);
  Result<std::string> eval_text = read_text_file(argv[3]);
  if (!calib_text || !eval_text) return fail(calib_text ? eval_text.status() : calib_text.status());
  const std::vector<int32_t> calib = tok->encode(*calib_text, true, false);
  const std::vector<int32_t> eval = tok->encode(*eval_text, true, false);
  const int64_t n_layer = model->config().n_layer;
  std::vector<std::vector<float>> dense;
  for (int64_t l = 0; l < n_layer; ++l) {
    for (model::LinearRole role : model::kFfnRoles) {
      const model::Linear& lin = *model->linear(l, role);
      dense.emplace_back(lin.dense_data(), lin.dense_data() + lin.n() * lin.k());
    }
  }
  auto t0 = Clock::now();
  const auto chunks = pipeline::calibration_chunks(calib, ctx, calib_tokens, bos);
  Result<pipeline::CalibrationStats> stats = pipeline::collect_hessians(*model, chunks, pipeline::CalibrationOptions{}, pool);
  if (!stats) return fail(stats.status());
  std::fprintf(stderr, "calibration: %lld tokens in %.1f s\n", static_cast<long long>(stats->tokens()), since(t0));
  std::stringstream list(configs);
  for (std::string name; std::getline(list, name, ',');) {
    Totals tot;
    if (name != "dense") {
      Result<Config> cfg = parse_config(name);
      if (!cfg) return fail(cfg.status());
      t0 = Clock::now();
      if (Status s = run_config(*model, dense, *stats, *cfg, pool, tot); !s) return fail(s);
      const double p = static_cast<double>(tot.params);
      std::printf("%s: zeros %.4f, code %.4f bpw, +offsets+scales %.4f bpw, rel. calibrated error %.4f (%.0f s)\n",
                  name.c_str(), static_cast<double>(tot.zeros) / p, 16.0 * static_cast<double>(tot.codes) / p,
                  (16.0 * static_cast<double>(tot.codes) + 48.0 * static_cast<double>(tot.rows)) / p,
                  tot.err / tot.err_base, since(t0));
    }
    Result<double> ppl = perplexity(*model, eval, ctx, eval_chunks, bos, pool);
    if (!ppl) return fail(ppl.status());
    std::printf("%s: PPL %.4f\n", name.c_str(), *ppl);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace lutq

int main(int argc, char** argv) { return lutq::run(argc, argv); }
