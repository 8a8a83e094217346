// The student against the engine: on a tiny llama and qwen2 quantized to BCQ (scalar exact
// kernels), the student's next-token loss from its own fp32 forward equals the one computed from
// the engine's logits (both compute the same sums in fp32, in different orders: agreement to
// ~1e-4 relative); a scale's gradient from step() matches a central difference of loss(); one
// tuning step on KL to the dense model lowers the loss.
#include "train/student.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <tuple>
#include <unistd.h>

#include "core/fp16.h"
#include "format/bcq_matrix.h"
#include "lutqfile/lutq_file.h"
#include "pipeline/quantize_model.h"
#include "support/tiny_llama.h"
#include "support/tiny_model.h"
#include "train/adamw.h"
#include "train/tune.h"

namespace lutq::train {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_train_" + std::to_string(::getpid()) + "_" + name)).string();
}

model::LinearSpec spec(int q, quant::Method method = quant::Method::kAlternating) {
  quant::QuantOptions qo;
  qo.method = method;
  qo.cfg.q = q;
  qo.cfg.g = 32;
  qo.cfg.has_offset = true;
  return model::LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

double ce_from_logits(const std::vector<float>& logits, const std::vector<int32_t>& tokens, int64_t v) {
  double total = 0.0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const float* z = logits.data() + i * v;
    const double mx = *std::max_element(z, z + v);
    double sum = 0.0;
    for (int64_t j = 0; j < v; ++j) sum += std::exp(double(z[j]) - mx);
    total -= double(z[tokens[i + 1]]) - mx - std::log(sum);
  }
  return total / double(tokens.size() - 1);
}

// Scalar exact kernels, with `adapter` applied at load when given.
model::LoadOptions exact_options(std::shared_ptr<const lutqfile::Adapter> adapter = nullptr) {
  model::LoadOptions opt;
  opt.isa = kernels::Isa::kScalar;
  opt.precision = kernels::Precision::kExact;
  opt.adapter = std::move(adapter);
  return opt;
}

// The engine's logits over tokens on the lutq file at `path`.
std::vector<float> engine_logits(const std::string& path, const std::vector<int32_t>& tokens,
                                 std::shared_ptr<const lutqfile::Adapter> adapter = nullptr) {
  Result<io::GgufFile> f = io::GgufFile::open(path);
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  ThreadPool pool(1);
  return testing::prefill_all(testing::load_tiny(*f, pool, exact_options(std::move(adapter))), tokens, pool);
}

struct Fixture {
  testing::Tiny tiny;
  io::GgufFile dense;
  std::string path;
  std::optional<io::GgufFile> quantized;
  std::vector<int32_t> tokens;

  Fixture(const std::string& arch, int q, quant::Method method = quant::Method::kAlternating)
      : tiny(make(arch)), dense(testing::open_tiny(tiny)), path(temp_path(arch + ".lutq")) {
    ThreadPool pool(1);
    Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(dense, spec(q, method), path, pool);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    Result<io::GgufFile> f = io::GgufFile::open(path);
    EXPECT_TRUE(f.is_ok()) << f.status().message();
    quantized.emplace(std::move(*f));
    std::mt19937 rng(5);
    for (int i = 0; i < 12; ++i) tokens.push_back(int32_t(rng() % tiny.spec.n_vocab));
  }
  ~Fixture() { std::filesystem::remove(path); }
  static testing::Tiny make(const std::string& arch) {
    testing::TinySpec s = testing::small_tiny_spec();
    s.arch = arch;
    return testing::make_tiny(s);
  }
};

TEST(Student, LossEqualsTheEnginesOnTheSameFile) {
  for (const std::string arch : {"llama", "qwen2"}) {
    Fixture fx(arch, 3);
    Result<Student> st = Student::load(*fx.quantized);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    EXPECT_EQ(st->trainables().size(), size_t(2 * 7)) << arch;  // every block linear layer
    Result<double> mine = st->loss(fx.tokens, nullptr, TuneLoss::kCe);
    ASSERT_TRUE(mine.is_ok()) << mine.status().message();
    ThreadPool pool(1);
    model::LoadOptions opt;
    opt.isa = kernels::Isa::kScalar;
    opt.precision = kernels::Precision::kExact;
    const model::Model engine = testing::load_tiny(*fx.quantized, pool, opt);
    const double ref = ce_from_logits(testing::prefill_all(engine, fx.tokens, pool), fx.tokens, engine.config().n_vocab);
    EXPECT_NEAR(*mine, ref, 1e-4 * (1.0 + std::fabs(ref))) << arch;
  }
}

TEST(Student, ScaleGradientMatchesFiniteDifferences) {
  Fixture fx("llama", 2);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  ASSERT_TRUE(st->step(fx.tokens, nullptr, TuneLoss::kCe).is_ok());
  // A few scales of different layers and roles; fp32 forward, so a relative step of 1e-2 and a
  // tolerance of 2 % of the larger of the two plus an absolute floor.
  for (const size_t ti : {size_t(0), size_t(5), size_t(9), size_t(13)}) {
    TrainableLinear& t = st->trainables()[ti];
    for (const size_t i : {size_t(0), t.scales.alpha.size() / 2}) {
      const float keep = t.scales.alpha[i];
      const float h = std::max(1e-2f * std::fabs(keep), 1e-3f);
      t.scales.alpha[i] = keep + h;
      st->refresh();
      const double up = *st->loss(fx.tokens, nullptr, TuneLoss::kCe);
      t.scales.alpha[i] = keep - h;
      st->refresh();
      const double down = *st->loss(fx.tokens, nullptr, TuneLoss::kCe);
      t.scales.alpha[i] = keep;
      st->refresh();
      const double fd = (up - down) / (2.0 * double(h));
      const double g = t.grad.alpha[i];
      EXPECT_NEAR(g, fd, 0.02 * std::max(std::fabs(g), std::fabs(fd)) + 1e-4) << t.name << " alpha " << i;
    }
  }
}

TEST(Student, AdamWStepsLowerTheKlToTheDenseModel) {
  Fixture fx("llama", 2);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  ThreadPool pool(1);
  const model::Model teacher = testing::load_tiny(fx.dense, pool);
  const std::vector<float> t_logits = testing::prefill_all(teacher, fx.tokens, pool);
  AdamWOptions o;
  o.lr = 1e-3;
  o.total_steps = 20;
  std::vector<AdamW> opt;
  for (const TrainableLinear& t : st->trainables()) opt.emplace_back(t.scales.alpha.size(), o);
  const double before = *st->loss(fx.tokens, t_logits.data(), TuneLoss::kKl);
  for (int step = 0; step < 20; ++step) {
    st->zero_grad();
    ASSERT_TRUE(st->step(fx.tokens, t_logits.data(), TuneLoss::kKl).is_ok());
    for (size_t i = 0; i < opt.size(); ++i) {
      TrainableLinear& t = st->trainables()[i];
      ASSERT_TRUE(opt[i].step(t.scales.alpha, t.grad.alpha).is_ok());
    }
    st->refresh();
  }
  const double after = *st->loss(fx.tokens, t_logits.data(), TuneLoss::kKl);
  EXPECT_LT(after, 0.8 * before) << "KL before " << before << ", after " << after;
}

// RTN scales are uniform and stored once per group (format::has_uniform_scales); tuned ones are
// not: the written file stores every plane of them, without the uniform key, and runs as trained.
TEST(Tune, UniformScalesAreWrittenInFullOnceTuned) {
  Fixture fx("llama", 3, quant::Method::kRtn);
  const std::string name = "blk.0.attn_q.weight";
  ASSERT_TRUE((*lutqfile::find_bcq(*fx.quantized, name))->uniform);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  for (TrainableLinear& t : st->trainables()) {
    for (size_t i = 0; i < t.scales.alpha.size(); ++i) {
      t.scales.alpha[i] = round_to_fp16(t.scales.alpha[i] * (1.0f + 0.01f * static_cast<float>(i % 3)));
    }
  }
  st->refresh();
  const std::string out = temp_path("tuned-uniform.lutq");
  ASSERT_TRUE(write_tuned(*fx.quantized, *st, out, "test").is_ok());
  Result<io::GgufFile> f = io::GgufFile::open(out);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  Result<std::optional<lutqfile::BcqEntry>> e = lutqfile::find_bcq(*f, name);
  ASSERT_TRUE(e.is_ok() && e->has_value());
  EXPECT_FALSE((*e)->uniform);
  Result<format::BcqMatrix> w = lutqfile::read_bcq(*f, name);
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  EXPECT_FALSE(format::has_uniform_scales(*w));
  for (const TrainableLinear& t : st->trainables()) {
    if (t.name != name) continue;
    for (size_t i = 0; i < t.scales.alpha.size(); ++i) {
      ASSERT_EQ(fp16_to_fp32(w->alpha[i]), round_to_fp16(t.scales.alpha[i])) << "alpha " << i;
    }
  }
  const double mine = *st->loss(fx.tokens, nullptr, TuneLoss::kCe);
  ThreadPool pool(1);
  const model::Model engine = testing::load_tiny(*f, pool, exact_options());
  const double ref = ce_from_logits(testing::prefill_all(engine, fx.tokens, pool), fx.tokens, engine.config().n_vocab);
  EXPECT_NEAR(mine, ref, 1e-4 * (1.0 + std::fabs(ref)));
  std::filesystem::remove(out);
}

TEST(Tune, HeldOutKlFallsAndTheWrittenFileRunsAsTrained) {
  Fixture fx("llama", 2);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  ThreadPool pool(1);
  const model::Model teacher_model = testing::load_tiny(fx.dense, pool);
  const TeacherFn teacher = [&](std::span<const int32_t> seq, std::vector<float>& logits) {
    logits = testing::prefill_all(teacher_model, std::vector<int32_t>(seq.begin(), seq.end()), pool);
    return Status::ok();
  };
  // One 16-token sequence repeated, so the held-out sequences are the training ones: this checks
  // the loop (batches, schedule, evaluation), not generalisation (docs/tuning.md measures that).
  std::mt19937 rng(11);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back(int32_t(rng() % fx.tiny.spec.n_vocab));
  for (int rep = 0; rep < 9; ++rep) tokens.insert(tokens.end(), tokens.begin(), tokens.begin() + 16);
  TuneOptions o;
  o.ctx = 16, o.steps = 15, o.batch = 2, o.held_out = 0.2;
  o.adam.lr = 3e-4;
  int64_t calls = 0;
  Result<TuneReport> r = tune(*st, tokens, o, teacher, [&](const TuneProgress& p) { EXPECT_EQ(p.step, ++calls); });
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(calls, 15);
  EXPECT_EQ(r->held_out_sequences, 2);
  EXPECT_LT(r->held_out_after, 0.9 * r->held_out_before);
  // The written file holds the tuned scales (rounded to fp16): the engine on it computes the
  // loss the student reports for the same scales rounded the same way.
  const std::string out = temp_path("tuned.lutq");
  ASSERT_TRUE(write_tuned(*fx.quantized, *st, out, "test").is_ok());
  Result<io::GgufFile> f = io::GgufFile::open(out);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  for (TrainableLinear& t : st->trainables()) {
    for (float& a : t.scales.alpha) a = round_to_fp16(a);
    for (float& z : t.scales.offset) z = round_to_fp16(z);
  }
  st->refresh();
  const std::vector<int32_t> seq(tokens.begin(), tokens.begin() + 8);
  const double mine = *st->loss(seq, nullptr, TuneLoss::kCe);
  model::LoadOptions opt;
  opt.isa = kernels::Isa::kScalar;
  opt.precision = kernels::Precision::kExact;
  const model::Model engine = testing::load_tiny(*f, pool, opt);
  const double ref = ce_from_logits(testing::prefill_all(engine, seq, pool), seq, engine.config().n_vocab);
  EXPECT_NEAR(mine, ref, 1e-4 * (1.0 + std::fabs(ref)));
  std::filesystem::remove(out);
  // Bad options are refused before anything is trained.
  o.batch = 0;
  EXPECT_FALSE(tune(*st, tokens, o, teacher, {}).is_ok());
  o.batch = 1, o.ctx = 100;
  EXPECT_FALSE(tune(*st, tokens, o, teacher, {}).is_ok());  // fewer than 2 sequences
}

TEST(Tune, AdapterGivesTheTunedFilesModelAndRefusesOtherModels) {
  Fixture fx("llama", 2);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.8f, 1.25f);
  for (TrainableLinear& t : st->trainables()) {  // stands in for training: every scale moves
    for (float& a : t.scales.alpha) a = round_to_fp16(a * u(rng));
    for (float& z : t.scales.offset) z = round_to_fp16(z + 0.01f * (u(rng) - 1.0f));
  }
  st->refresh();
  const std::string tuned = temp_path("adapter_tuned.lutq"), adapter = temp_path("adapter.gguf");
  ASSERT_TRUE(write_tuned(*fx.quantized, *st, tuned, "test").is_ok());
  ASSERT_TRUE(write_adapter(*fx.quantized, *st, adapter, "test").is_ok());
  Result<std::shared_ptr<const lutqfile::Adapter>> ad = lutqfile::Adapter::read(adapter);
  ASSERT_TRUE(ad.is_ok()) << ad.status().message();
  EXPECT_EQ((*ad)->size(), st->trainables().size());
  EXPECT_LT(std::filesystem::file_size(adapter), std::filesystem::file_size(tuned) / 2);
  // The base file + the adapter is the tuned file, bit for bit, on the engine.
  EXPECT_EQ(engine_logits(fx.path, fx.tokens, *ad), engine_logits(tuned, fx.tokens));
  ThreadPool pool(1);
  const model::LoadOptions opt = exact_options(*ad);
  // tune --adapter starts the student from the adapter's scales.
  Result<Student> resumed = Student::load(*fx.quantized, ad->get());
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().message();
  EXPECT_EQ(*resumed->loss(fx.tokens, nullptr, TuneLoss::kCe), *st->loss(fx.tokens, nullptr, TuneLoss::kCe));
  // Another model (same names and shapes, other codes), another configuration: refused, named.
  for (const auto& [arch, q, why] : {std::tuple{"qwen2", 2, "codes differ"}, std::tuple{"qwen2", 3, "another model"}}) {
    Fixture other(arch, q);
    Result<model::Model> m = model::Model::load(*other.quantized, opt, pool);
    ASSERT_FALSE(m.is_ok()) << arch << " q" << q;
    EXPECT_NE(m.status().message().find(why), std::string::npos) << m.status().message();
    EXPECT_FALSE(Student::load(*other.quantized, ad->get()).is_ok());
  }
  // The dense model holds no BCQ matrix for the adapter's names.
  Result<model::Model> dense = model::Model::load(fx.dense, opt, pool);
  ASSERT_FALSE(dense.is_ok());
  EXPECT_NE(dense.status().message().find("does not hold as a BCQ matrix"), std::string::npos) << dense.status().message();
  std::filesystem::remove(tuned);
  std::filesystem::remove(adapter);
}

TEST(Tune, RowAdapterTrainsMultipliersAndGivesTheTunedFilesModel) {
  Fixture fx("llama", 2);
  Result<Student> st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  // The multiplier gradient Σ_{s in line} α0·dL/dα against a central difference of the loss with
  // every scale of one line and plane multiplied by 1 ± h.
  ASSERT_TRUE(st->step(fx.tokens, nullptr, TuneLoss::kCe).is_ok());
  TrainableLinear& t = st->trainables()[3];
  const int q = t.codes.cfg.q;
  const int64_t line = 2, plane = 1;
  const std::vector<float> base = t.scales.alpha;
  double analytic = 0.0;
  for (int64_t set = 0; set < t.codes.num_scale_sets(); ++set) {
    if (lutqfile::scale_line(t.codes, set) != line) continue;
    analytic += double(base[size_t(set * q + plane)]) * double(t.grad.alpha[size_t(set * q + plane)]);
  }
  const auto loss_at = [&](double mult) {
    for (int64_t set = 0; set < t.codes.num_scale_sets(); ++set) {
      const size_t a = size_t(set * q + plane);
      t.scales.alpha[a] = lutqfile::scale_line(t.codes, set) == line ? float(base[a] * mult) : base[a];
    }
    st->refresh();
    return *st->loss(fx.tokens, nullptr, TuneLoss::kCe);
  };
  const double h = 1e-2, numeric = (loss_at(1 + h) - loss_at(1 - h)) / (2 * h);
  (void)loss_at(1.0);
  EXPECT_NEAR(analytic, numeric, 0.02 * std::max(std::fabs(analytic), std::fabs(numeric)) + 1e-4);
  // Training the multipliers lowers the held-out loss; the row adapter is the tuned file's model.
  st = Student::load(*fx.quantized);
  ASSERT_TRUE(st.is_ok());
  std::vector<int32_t> tokens(fx.tokens.begin(), fx.tokens.begin() + 12);
  for (int rep = 0; rep < 9; ++rep) tokens.insert(tokens.end(), tokens.begin(), tokens.begin() + 12);
  TuneOptions o;
  o.ctx = 12, o.steps = 12, o.batch = 2, o.held_out = 0.2, o.loss = TuneLoss::kCe, o.kind = lutqfile::AdapterKind::kRow;
  o.adam.lr = 1e-2;
  Result<TuneReport> r = tune(*st, tokens, o, {}, {});
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_LT(r->held_out_after, r->held_out_before);
  const std::string tuned = temp_path("row_tuned.lutq"), adapter = temp_path("row_adapter.gguf");
  ASSERT_TRUE(write_tuned(*fx.quantized, *st, tuned, "test").is_ok());
  ASSERT_TRUE(write_adapter(*fx.quantized, *st, adapter, "test").is_ok());
  Result<std::shared_ptr<const lutqfile::Adapter>> ad = lutqfile::Adapter::read(adapter);
  ASSERT_TRUE(ad.is_ok()) << ad.status().message();
  int64_t mult_bytes = 0;
  for (const TrainableLinear& x : st->trainables()) mult_bytes += 2 * lutqfile::scale_lines(x.codes) * x.codes.cfg.q;
  EXPECT_EQ((*ad)->scale_bytes(), mult_bytes);
  EXPECT_EQ(engine_logits(fx.path, fx.tokens, *ad), engine_logits(tuned, fx.tokens));
  // A row adapter multiplies the scales it was trained from: on the tuned file it is refused.
  ThreadPool pool(1);
  Result<io::GgufFile> tf = io::GgufFile::open(tuned);
  ASSERT_TRUE(tf.is_ok()) << tf.status().message();
  Result<model::Model> twice = model::Model::load(*tf, exact_options(*ad), pool);
  ASSERT_FALSE(twice.is_ok());
  EXPECT_NE(twice.status().message().find("codes or scales differ"), std::string::npos) << twice.status().message();
  std::filesystem::remove(tuned);
  std::filesystem::remove(adapter);
}

// Every trained value of a student: scales, offsets and row multipliers.
std::vector<float> trained_values(const Student& st) {
  std::vector<float> out;
  for (const TrainableLinear& t : st.trainables()) {
    out.insert(out.end(), t.scales.alpha.begin(), t.scales.alpha.end());
    out.insert(out.end(), t.scales.offset.begin(), t.scales.offset.end());
    out.insert(out.end(), t.row_mult.begin(), t.row_mult.end());
  }
  return out;
}

// A run stopped after 3 of 7 steps (--run-steps) and continued from its checkpoint (--resume)
// ends with the scales and held-out loss of the uninterrupted run, bit for bit, for full and row
// training; a checkpoint of another run or a damaged one is refused.
TEST(Tune, ResumedRunEqualsTheUninterruptedOne) {
  Fixture fx("llama", 2);
  std::mt19937 rng(3);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 12 * 8; ++i) tokens.push_back(int32_t(rng() % fx.tiny.spec.n_vocab));
  const std::string path = temp_path("state.gguf");
  for (const lutqfile::AdapterKind kind : {lutqfile::AdapterKind::kFull, lutqfile::AdapterKind::kRow}) {
    SCOPED_TRACE(kind == lutqfile::AdapterKind::kFull ? "full" : "row");
    TuneOptions o;
    o.ctx = 12, o.steps = 7, o.batch = 2, o.held_out = 0.2, o.loss = TuneLoss::kCe, o.kind = kind, o.seed = 9;
    o.adam.lr = kind == lutqfile::AdapterKind::kFull ? 1e-3 : 1e-2;
    o.adam.warmup_steps = 2;
    Result<Student> straight = Student::load(*fx.quantized);
    ASSERT_TRUE(straight.is_ok()) << straight.status().message();
    Result<TuneReport> want = tune(*straight, tokens, o, {}, nullptr);
    ASSERT_TRUE(want.is_ok()) << want.status().message();
    // Stopped after 3 steps; the state is saved once, at the stop.
    Result<Student> first = Student::load(*fx.quantized);
    TuneOptions part = o;
    part.run_steps = 3;
    int saves = 0;
    TuneCheckpoints save;
    save.save = [&](const TuneState& s) {
      ++saves;
      return save_tune_state(path, s);
    };
    Result<TuneReport> stopped = tune(*first, tokens, part, {}, nullptr, save);
    ASSERT_TRUE(stopped.is_ok()) << stopped.status().message();
    EXPECT_TRUE(stopped->stopped);
    EXPECT_EQ(stopped->steps_done, 3);
    EXPECT_EQ(saves, 1);
    Result<TuneState> state = load_tune_state(path);
    ASSERT_TRUE(state.is_ok()) << state.status().message();
    EXPECT_EQ(state->step, 3);
    Result<Student> second = Student::load(*fx.quantized);
    TuneCheckpoints resume;
    resume.resume = &*state;
    Result<TuneReport> got = tune(*second, tokens, o, {}, nullptr, resume);
    ASSERT_TRUE(got.is_ok()) << got.status().message();
    EXPECT_FALSE(got->stopped);
    EXPECT_EQ(got->steps_done, 7);
    EXPECT_EQ(trained_values(*second), trained_values(*straight));
    EXPECT_EQ(got->held_out_before, want->held_out_before);
    EXPECT_EQ(got->held_out_after, want->held_out_after);
    // Another seed is another run.
    TuneOptions other = o;
    other.seed = 10;
    Result<Student> third = Student::load(*fx.quantized);
    Result<TuneReport> refused = tune(*third, tokens, other, {}, nullptr, resume);
    ASSERT_FALSE(refused.is_ok());
    EXPECT_NE(refused.status().message().find("another run"), std::string::npos) << refused.status().message();
  }
  // A truncated checkpoint and a file that is no checkpoint are refused by name.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  Result<TuneState> cut = load_tune_state(path);
  ASSERT_FALSE(cut.is_ok());
  EXPECT_NE(cut.status().message().find(path), std::string::npos) << cut.status().message();
  Result<TuneState> model_file = load_tune_state(fx.path);
  ASSERT_FALSE(model_file.is_ok());
  EXPECT_NE(model_file.status().message().find("not a lutq tune state"), std::string::npos) << model_file.status().message();
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace lutq::train
