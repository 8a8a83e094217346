// FlexRound and the clipping search in the quantize pipeline (quantize_layer): both need
// calibration statistics and refuse clearly without them or with GPTQ / AdaDim; with them they
// give valid matrices no worse than the plain fit on the calibrated loss.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/config.h"
#include "pipeline/quantize_model.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "support/random_bcq.h"

namespace lutq::pipeline {
namespace {

struct Layer {
  int64_t n = 16, k = 128;
  std::vector<float> w;
  std::vector<double> h;
};

Layer make_layer() {
  Layer l;
  std::mt19937_64 rng(7);
  std::student_t_distribution<float> t3(3.0f);
  for (int64_t i = 0; i < l.n * l.k; ++i) l.w.push_back(0.02f * t3(rng));
  const std::vector<float> x = lutq::testing::random_activations(4 * l.k, l.k, rng);
  Result<quant::HessianAccumulator> acc = quant::HessianAccumulator::create(l.k);
  EXPECT_TRUE(acc.is_ok());
  EXPECT_TRUE(acc->add(x.data(), 4 * l.k).is_ok());
  l.h = acc->h();
  return l;
}

LinearChoice choice(const std::string& method, bool clip) {
  LinearChoice c;
  c.quantize = true;
  c.quant.cfg = format::BcqConfig{3, 64, format::Orientation::kPerOC, true};
  EXPECT_TRUE(model::apply_quantizer(method, c).is_ok());
  c.clip_search = clip;
  c.flexround_steps = 20;
  return c;
}

TEST(SearchedQuantize, NeedCalibration) {
  const Layer l = make_layer();
  ThreadPool pool(1);
  for (const LinearChoice& c : {choice("flexround", false), choice("rtn", true)}) {
    Result<format::BcqMatrix> r = quantize_layer("blk.0.attn_q.weight", l.w.data(), l.n, l.k, c, nullptr, pool);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("calibration"), std::string::npos) << r.status().message();
    LinearSpec spec;
    spec.roles[0] = c;
    ModelConfig config;
    config.n_layer = 1;
    EXPECT_TRUE(needs_calibration(spec, config));
  }
}

TEST(SearchedQuantize, ClipSearchRefusesGptqAndAdaDim) {
  const Layer l = make_layer();
  ThreadPool pool(1);
  LinearChoice c = choice("alternating", true);
  c.adadim = true;
  Result<format::BcqMatrix> r = quantize_layer("blk.0.attn_q.weight", l.w.data(), l.n, l.k, c, l.h.data(), pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("AdaDim"), std::string::npos) << r.status().message();
}

TEST(SearchedQuantize, NoWorseThanThePlainFit) {
  const Layer l = make_layer();
  ThreadPool pool(2);
  const LinearChoice plain = choice("rtn", false);
  Result<format::BcqMatrix> base = quantize_layer("x", l.w.data(), l.n, l.k, plain, l.h.data(), pool);
  ASSERT_TRUE(base.is_ok()) << base.status().message();
  const double e_base = quant::calibrated_error(l.w.data(), *base, l.h.data());
  for (const LinearChoice& c : {choice("flexround", false), choice("rtn", true)}) {
    Result<format::BcqMatrix> r = quantize_layer("x", l.w.data(), l.n, l.k, c, l.h.data(), pool);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_TRUE(format::validate(*r).is_ok());
    EXPECT_LE(quant::calibrated_error(l.w.data(), *r, l.h.data()), e_base);
  }
}

}  // namespace
}  // namespace lutq::pipeline
