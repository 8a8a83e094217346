// Per-request scale adapters (Model::add_adapter, BatchRow::adapter): a tiny llama and qwen2
// quantized to BCQ, two adapters with other scales for some of their layers. Rows of each adapter,
// alone or mixed in one batch with the others', give the logits of the model loaded with that
// adapter applied at load (LoadOptions::adapter), bit for bit; rows of adapter 0 the model's own.
// Bad adapters and indices are refused with clear errors and leave the model as it was.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <unistd.h>

#include "lutqfile/adapter.h"
#include "model/model.h"
#include "pipeline/quantize_model.h"
#include "support/scaled_adapter.h"
#include "support/tiny_llama.h"
#include "support/tiny_model.h"

namespace lutq::model {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_adrows_" + std::to_string(::getpid()) + "_" + name)).string();
}

LinearSpec spec() {
  quant::QuantOptions qo;
  qo.method = quant::Method::kAlternating;
  qo.cfg.q = 3;
  qo.cfg.g = 32;
  qo.cfg.has_offset = true;
  return LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact);
}

// A quantized tiny model and two adapters: `one` rescales the q and ffn_down layers of every
// block, `two` every layer of block 0 (another factor per plane).
struct Fixture {
  testing::Tiny tiny;
  std::string path, one, two;
  std::optional<io::GgufFile> file;

  explicit Fixture(const std::string& arch)
      : tiny(make(arch)), path(temp_path(arch + ".lutq")), one(temp_path(arch + "_one.gguf")),
        two(temp_path(arch + "_two.gguf")) {
    ThreadPool pool(1);
    const io::GgufFile dense = testing::open_tiny(tiny);
    Result<pipeline::QuantizeReport> r = pipeline::quantize_to_file(dense, spec(), path, pool);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    Result<io::GgufFile> f = io::GgufFile::open(path);
    EXPECT_TRUE(f.is_ok()) << f.status().message();
    file.emplace(std::move(*f));
    std::vector<std::string> first, second;
    for (int64_t l = 0; l < tiny.spec.n_layer; ++l) {
      first.push_back("blk." + std::to_string(l) + ".attn_q.weight");
      first.push_back("blk." + std::to_string(l) + ".ffn_down.weight");
    }
    for (const char* role : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
      second.push_back(std::string("blk.0.") + role + ".weight");
    }
    write(one, first, 1.25f);
    write(two, second, 0.8f);
  }
  ~Fixture() {
    for (const std::string& p : {path, one, two}) std::filesystem::remove(p);
  }
  static testing::Tiny make(const std::string& arch) {
    testing::TinySpec s = testing::small_tiny_spec();
    s.arch = arch;
    return testing::make_tiny(s);
  }
  void write(const std::string& out, const std::vector<std::string>& names, float factor) const {
    const Status st = testing::write_scaled_adapter(*file, path, names, factor, out);
    ASSERT_TRUE(st.is_ok()) << st.message();
  }
};

std::shared_ptr<const lutqfile::Adapter> read(const std::string& path) {
  Result<std::shared_ptr<const lutqfile::Adapter>> a = lutqfile::Adapter::read(path);
  EXPECT_TRUE(a.is_ok()) << a.status().message();
  return a.is_ok() ? *a : nullptr;
}

LoadOptions options(kernels::Isa isa, std::shared_ptr<const lutqfile::Adapter> adapter = nullptr) {
  LoadOptions o;
  o.isa = isa;
  o.adapter = std::move(adapter);
  return o;
}

// Logits of every position of each sequence, decoding them one position per step, all sequences
// in one batch per step; sequence s runs with adapter adapters[s].
std::vector<std::vector<float>> decode_together(const Model& m, const std::vector<std::vector<int32_t>>& seqs,
                                                const std::vector<int32_t>& adapters, ThreadPool& pool) {
  const int64_t v = m.config().n_vocab;
  auto mem = m.make_memory(32, static_cast<int64_t>(seqs.size()));
  EXPECT_TRUE(mem.is_ok()) << mem.status().message();
  std::vector<std::vector<float>> out(seqs.size());
  for (size_t t = 0; t < seqs[0].size(); ++t) {
    Batch b;
    for (size_t s = 0; s < seqs.size(); ++s) b.add(seqs[s][t], int64_t(t), int32_t(s), true, adapters[s]);
    std::vector<float> logits(seqs.size() * static_cast<size_t>(v));
    const Status st = m.forward(b, **mem, logits.data(), pool);
    EXPECT_TRUE(st.is_ok()) << st.message();
    for (size_t s = 0; s < seqs.size(); ++s) {
      out[s].insert(out[s].end(), logits.begin() + long(s * v), logits.begin() + long((s + 1) * v));
    }
  }
  return out;
}

std::vector<kernels::Isa> isas() {
  std::vector<kernels::Isa> out{kernels::Isa::kScalar};
  for (kernels::Isa i : kernels::available_isas(detect_cpu())) {
    if (i != kernels::Isa::kScalar) out.push_back(i);
  }
  return out;
}

TEST(AdapterRows, MixedBatchEqualsEachAdapterAppliedAtLoad) {
  for (const std::string arch : {"llama", "qwen2"}) {
    Fixture fx(arch);
    const auto one = read(fx.one), two = read(fx.two);
    ASSERT_TRUE(one && two);
    for (kernels::Isa isa : isas()) {
      SCOPED_TRACE(arch + " " + kernels::isa_name(isa));
      ThreadPool pool(2);
      Model m = testing::load_tiny(*fx.file, pool, options(isa));
      Result<Model::AddedAdapter> a1 = m.add_adapter(*one);
      ASSERT_TRUE(a1.is_ok()) << a1.status().message();
      EXPECT_EQ(a1->index, 1);
      EXPECT_EQ(a1->layers, 2 * fx.tiny.spec.n_layer);
      EXPECT_GT(a1->bytes, 0);
      Result<Model::AddedAdapter> a2 = m.add_adapter(*two);
      ASSERT_TRUE(a2.is_ok()) << a2.status().message();
      EXPECT_EQ(a2->index, 2);
      EXPECT_EQ(m.adapters(), 2);
      std::mt19937 rng(11);
      std::vector<std::vector<int32_t>> seqs(4, std::vector<int32_t>(6));
      for (auto& s : seqs) {
        for (int32_t& t : s) t = int32_t(rng() % fx.tiny.spec.n_vocab);
      }
      const std::vector<int32_t> which{1, 0, 2, 1};
      const auto mixed = decode_together(m, seqs, which, pool);
      const Model base = testing::load_tiny(*fx.file, pool, options(isa));
      const Model with_one = testing::load_tiny(*fx.file, pool, options(isa, one));
      const Model with_two = testing::load_tiny(*fx.file, pool, options(isa, two));
      const Model* ref[] = {&base, &with_one, &with_two};
      for (size_t s = 0; s < seqs.size(); ++s) {
        const auto alone = decode_together(*ref[which[s]], {seqs[s]}, {0}, pool);
        EXPECT_EQ(mixed[s], alone[0]) << "sequence " << s << " (adapter " << which[s] << ")";
      }
      // The adapters do change the model: sequence 0 under the base scales differs.
      const auto plain = decode_together(base, {seqs[0]}, {0}, pool);
      EXPECT_NE(mixed[0], plain[0]);
    }
  }
}

TEST(AdapterRows, BadAdaptersAndIndicesAreRefused) {
  Fixture fx("llama");
  ThreadPool pool(1);
  Model m = testing::load_tiny(*fx.file, pool, options(kernels::Isa::kScalar));
  const auto one = read(fx.one);
  ASSERT_TRUE(one);
  // A row naming an adapter the model does not hold.
  auto mem = m.make_memory(8, 1);
  ASSERT_TRUE(mem.is_ok());
  std::vector<float> logits(static_cast<size_t>(m.config().n_vocab));
  Batch b;
  b.add(1, 0, 0, true, 1);
  Status st = m.forward(b, **mem, logits.data(), pool);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("adapter 1"), std::string::npos) << st.message();
  ASSERT_TRUE(m.add_adapter(*one).is_ok());
  EXPECT_TRUE(m.forward(b, **mem, logits.data(), pool).is_ok());
  // XQuant rebuilds K and V through the model's own k/v layers: adapter rows are refused there.
  auto xq = m.make_memory(8, 1, MemoryKind::kXQuant);
  ASSERT_TRUE(xq.is_ok()) << xq.status().message();
  st = m.forward(b, **xq, logits.data(), pool);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("XQuant"), std::string::npos) << st.message();
  // An adapter made for another model (the dense file holds no BCQ matrix of those names).
  Model dense = testing::load_tiny(testing::open_tiny(fx.tiny), pool, options(kernels::Isa::kScalar));
  Result<Model::AddedAdapter> r = dense.add_adapter(*one);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("blk.0.attn_q.weight"), std::string::npos) << r.status().message();
  EXPECT_EQ(dense.adapters(), 0);
}

}  // namespace
}  // namespace lutq::model
