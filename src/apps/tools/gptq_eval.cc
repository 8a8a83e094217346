// Test tool (not installed): calibrates the dense model on a text, quantizes every block linear
// with RTN / alternating BCQ / GPTQ, and reports llama.cpp-protocol perplexity on another text
// for each. Quantized layers run as dense fp32 over the dequantized weights (format::dequantize:
// the values the LUT kernels multiply), which keeps each evaluation fast at m = ctx.
//
//   lutq_gptq_eval MODEL.gguf CALIB.txt EVAL.txt [calib_tokens=8192] [eval_chunks=10] [bits=3]
//                  [group=128] [methods=dense,rtn,gptq-rtn,alt,gptq-alt]
// methods: dense, rtn, alt (alternating BCQ, no offset), gptq-rtn, gptq-alt, and the same
// with "-act" (act_order) appended to a gptq method.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/text_file.h"
#include "gen/perplexity.h"
#include "gen/tokenizer.h"
#include "io/checkpoint.h"
#include "pipeline/calibration.h"
#include "model/model.h"
#include "quant/gptq.h"

namespace lutq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Result<double> perplexity(const model::Model& m, const std::vector<int32_t>& tokens, int64_t ctx, int64_t chunks,
                          int32_t bos, ThreadPool& pool) {
  Result<gen::ChunkPlan> plan = gen::plan_chunks(static_cast<int64_t>(tokens.size()), ctx, chunks);
  if (!plan) return plan.status();
  Result<std::unique_ptr<model::Memory>> memory = m.make_memory(ctx);
  if (!memory) return memory.status();
  model::Memory& cache = **memory;
  const int64_t V = m.config().n_vocab;
  std::vector<float> logits(static_cast<size_t>(ctx * V));
  gen::PerplexityAccumulator acc;
  for (int64_t c = 0; c < plan->n_chunks; ++c) {
    const std::vector<int32_t> chunk = gen::chunk_tokens(tokens, *plan, c, bos);
    cache.clear(0);
    if (Status s = m.forward(chunk, 0, cache, logits.data(), pool, model::LogitsMode::kAll); !s) return s;
    gen::score_chunk(logits, chunk, V, *plan, acc, nullptr);
  }
  std::fprintf(stderr, "  ppl over %lld chunks: %.4f +- %.4f\n", static_cast<long long>(plan->n_chunks),
               acc.perplexity(), acc.error());
  return acc.perplexity();
}

int run(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL CALIB EVAL [calib_tokens] [eval_chunks] [bits] [group] [methods]\n", argv[0]);
    return 2;
  }
  const int64_t calib_tokens = argc > 4 ? std::stoll(argv[4]) : 8192;
  const int64_t eval_chunks = argc > 5 ? std::stoll(argv[5]) : 10;
  const int bits = argc > 6 ? std::stoi(argv[6]) : 3;
  const int64_t group = argc > 7 ? std::stoll(argv[7]) : 128;
  std::string methods = argc > 8 ? argv[8] : "dense,rtn,gptq-rtn,alt,gptq-alt";
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
  if (!calib_text) return fail(calib_text.status());
  if (!eval_text) return fail(eval_text.status());
  const std::vector<int32_t> calib = tok->encode(*calib_text, true, false);
  const std::vector<int32_t> eval = tok->encode(*eval_text, true, false);
  const int64_t n_layer = model->config().n_layer;

  // The dense weights, kept to re-quantize from for every method.
  std::vector<std::vector<float>> dense(static_cast<size_t>(n_layer * model::kNumLinearRoles));
  for (int64_t l = 0; l < n_layer; ++l) {
    for (int r = 0; r < model::kNumLinearRoles; ++r) {
      const model::Linear& lin = *model->linear(l, static_cast<model::LinearRole>(r));
      dense[static_cast<size_t>(l * model::kNumLinearRoles + r)].assign(lin.dense_data(),
                                                                        lin.dense_data() + lin.n() * lin.k());
    }
  }

  auto t0 = Clock::now();
  const auto chunks = pipeline::calibration_chunks(calib, ctx, calib_tokens, bos);
  pipeline::CalibrationOptions copt;
  copt.progress = [](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rcalibrating %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
  };
  Result<pipeline::CalibrationStats> stats = pipeline::collect_hessians(*model, chunks, copt, pool);
  if (!stats) return fail(stats.status());
  std::fprintf(stderr, "\ncalibration: %lld tokens in %.1f s\n", static_cast<long long>(stats->tokens()), since(t0));

  std::stringstream list(methods);
  for (std::string method; std::getline(list, method, ',');) {
    std::fprintf(stderr, "%s (q=%d, g=%lld):\n", method.c_str(), bits, static_cast<long long>(group));
    t0 = Clock::now();
    const bool is_gptq = method.rfind("gptq-", 0) == 0;
    const bool act = method.size() > 4 && method.substr(method.size() - 4) == "-act";
    const bool uniform = method.find("rtn") != std::string::npos;
    double err_sum = 0.0;
    double quant_secs = 0.0;
    for (int64_t l = 0; l < n_layer && method != "dense"; ++l) {
      std::vector<std::optional<quant::GptqFactor>> factors(pipeline::kNumLinearInputs);
      for (int r = 0; r < model::kNumLinearRoles; ++r) {
        const auto role = static_cast<model::LinearRole>(r);
        const std::vector<float>& w = dense[static_cast<size_t>(l * model::kNumLinearRoles + r)];
        const int64_t n = model->linear(l, role)->n();
        const int64_t k = model->linear(l, role)->k();
        quant::GptqOptions opt;
        opt.method = uniform ? quant::Method::kRtn : quant::Method::kAlternating;
        opt.cfg = format::BcqConfig{bits, *model::adapted_group(group, k), format::Orientation::kPerOC, uniform};
        opt.act_order = act;
        const quant::HessianAccumulator& h = stats->hessian(l, role);
        Result<format::BcqMatrix> q = Status::invalid("unset");
        const auto tq = Clock::now();
        if (is_gptq) {
          std::optional<quant::GptqFactor>& f = factors[static_cast<size_t>(pipeline::input_of(role))];
          if (!f) {
            Result<quant::GptqFactor> made = quant::prepare_gptq(h.h().data(), k, opt, &pool);
            if (!made) return fail(made.status());
            f = std::move(*made);
          }
          q = quant::gptq_quantize(w.data(), n, k, *f, opt, &pool);
        } else {
          q = quant::quantize(w.data(), n, k, quant::QuantOptions{opt.method, opt.cfg, opt.iterations}, &pool);
        }
        if (!q) return fail(q.status());
        quant_secs += since(tq);
        err_sum += quant::calibrated_error(w.data(), *q, h.h().data(), &pool) / static_cast<double>(h.rows());
        auto deq = std::make_shared<const std::vector<float>>(format::dequantize(*q));
        Result<model::Linear> lin = model::Linear::dense(deq, n, k, model->ops().isa);
        if (!lin) return fail(lin.status());
        if (Status s = model->replace_linear(l, role, std::move(*lin)); !s) return fail(s);
      }
      std::fprintf(stderr, "\r  block %lld/%lld", static_cast<long long>(l + 1), static_cast<long long>(n_layer));
    }
    if (method != "dense") {
      std::fprintf(stderr, "\n  quantized in %.1f s (%.1f s with error measurement); sum over layers of calibrated error / tokens %.4g\n",
                   quant_secs, since(t0), err_sum);
    }
    t0 = Clock::now();
    Result<double> ppl = perplexity(*model, eval, ctx, eval_chunks, bos, pool);
    if (!ppl) return fail(ppl.status());
    std::printf("%s q=%d g=%lld: PPL %.4f (eval %.1f s)\n", method.c_str(), bits, static_cast<long long>(group), *ppl,
                since(t0));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace lutq

int main(int argc, char** argv) { return lutq::run(argc, argv); }
