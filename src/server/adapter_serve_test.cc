// Per-request scale adapters through the Api and the scheduler (no sockets): a tiny BCQ model
// holding an adapter (Model::add_adapter) serves requests with "adapter" (or "model") naming it
// exactly as a server of the model with that adapter applied at load does, requests without it
// as the plain model does, both at once in one batch; unknown names get a 404 and /v1/models
// lists the adapters.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "lutqfile/adapter.h"
#include "pipeline/quantize_model.h"
#include "server/api.h"
#include "support/byte_vocab.h"
#include "support/scaled_adapter.h"
#include "support/tiny_llama.h"
#include "support/tiny_model.h"

namespace lutq::server {
namespace {

using nlohmann::json;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lutq_adserve_" + std::to_string(::getpid()) + "_" + name)).string();
}

// A tiny llama over the byte vocabulary, quantized (q3 g32), and an adapter rescaling every layer
// of block 0.
struct Files {
  std::string lutq = temp_path("m.lutq"), adapter = temp_path("a.gguf");
  std::optional<io::GgufFile> file;
  Files() {
    testing::TinySpec s = testing::small_tiny_spec();
    s.n_vocab = 260;
    s.ctx = 256;
    const testing::Tiny tiny = testing::make_tiny(s);
    quant::QuantOptions qo;
    qo.cfg.q = 3;
    qo.cfg.g = 32;
    qo.cfg.has_offset = true;
    ThreadPool pool(1);
    const io::GgufFile dense = testing::open_tiny(tiny);
    Result<pipeline::QuantizeReport> r =
        pipeline::quantize_to_file(dense, model::LinearSpec::quantized(qo, kernels::Isa::kScalar, kernels::Precision::kExact), lutq, pool);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    Result<io::GgufFile> f = io::GgufFile::open(lutq);
    EXPECT_TRUE(f.is_ok()) << f.status().message();
    file.emplace(std::move(*f));
    std::vector<std::string> names;
    for (const char* role : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
      names.push_back(std::string("blk.0.") + role + ".weight");
    }
    const Status st = testing::write_scaled_adapter(*file, lutq, names, 1.4f, adapter);
    EXPECT_TRUE(st.is_ok()) << st.message();
  }
  ~Files() {
    std::filesystem::remove(lutq);
    std::filesystem::remove(adapter);
  }
  std::shared_ptr<const lutqfile::Adapter> read() const {
    Result<std::shared_ptr<const lutqfile::Adapter>> a = lutqfile::Adapter::read(adapter);
    EXPECT_TRUE(a.is_ok()) << a.status().message();
    return *a;
  }
};

struct Served {
  Served(const model::Model& m, std::vector<std::string> adapters) {
    SchedulerOptions so;
    so.parallel = 3;
    so.ctx = 128;
    scheduler = std::move(*Scheduler::create(m, tok, pool, so, metrics));
    api = std::make_unique<Api>(*scheduler, tok, metrics, ApiOptions{"base", "", std::move(adapters)});
  }
  ApiReply submit(const std::string& extra) {
    const std::string body = R"({"prompt":"adapters","max_tokens":12,"temperature":0)" + extra + "}";
    return api->handle(ApiRequest{"POST", "/v1/completions", body, ""});
  }
  // The completion's text (or the error body).
  static std::string text(const ApiReply& r) {
    if (!r.job) return r.body;
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    JobUpdate u;
    do {
      u = r.job->wait(std::chrono::milliseconds(20));
      out += u.text;
    } while (!u.finished && std::chrono::steady_clock::now() < deadline);
    EXPECT_TRUE(u.finished);
    return json::parse(full_reply(r, out, u).body)["choices"][0]["text"].get<std::string>();
  }
  gen::Tokenizer tok{testing::byte_vocab()};
  ThreadPool pool{2};
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Api> api;
};

model::Model load(const io::GgufFile& f, std::shared_ptr<const lutqfile::Adapter> adapter = nullptr) {
  ThreadPool pool(1);
  model::LoadOptions o;
  o.adapter = std::move(adapter);
  return testing::load_tiny(f, pool, o);
}

TEST(AdapterServe, RequestsPickTheirAdapterAndShareTheBatch) {
  Files files;
  model::Model held = load(*files.file);
  ASSERT_TRUE(held.add_adapter(*files.read()).is_ok());
  const model::Model plain = load(*files.file), applied = load(*files.file, files.read());
  std::string want_plain, want_adapted;
  {
    Served p(plain, {});
    want_plain = Served::text(p.submit(""));
    Served a(applied, {});
    want_adapted = Served::text(a.submit(""));
  }
  ASSERT_NE(want_plain, want_adapted) << "the adapter should change this model's greedy text";
  Served s(held, {"tuned"});
  // All three submitted before any finishes: their decode steps share batches.
  const ApiReply by_field = s.submit(R"(,"adapter":"tuned")");
  const ApiReply none = s.submit("");
  const ApiReply by_model = s.submit(R"(,"model":"tuned")");
  EXPECT_EQ(Served::text(by_field), want_adapted);
  EXPECT_EQ(Served::text(none), want_plain);
  EXPECT_EQ(Served::text(by_model), want_adapted);
}

TEST(AdapterServe, UnknownAdaptersAreRefusedAndTheModelListShowsThem) {
  Files files;
  model::Model held = load(*files.file);
  ASSERT_TRUE(held.add_adapter(*files.read()).is_ok());
  Served s(held, {"tuned"});
  const ApiReply bad = s.submit(R"(,"adapter":"other")");
  EXPECT_EQ(bad.status, 404);
  EXPECT_NE(bad.body.find("adapter_not_found"), std::string::npos) << bad.body;
  EXPECT_NE(bad.body.find("'tuned'"), std::string::npos) << bad.body;
  EXPECT_EQ(s.submit(R"(,"adapter":7)").status, 400);
  // A "model" that names no adapter is only echoed, as before.
  EXPECT_TRUE(s.submit(R"(,"model":"whatever")").job != nullptr);
  const json models = json::parse(s.api->handle(ApiRequest{"GET", "/v1/models", "", ""}).body);
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][1]["id"], "tuned");
  EXPECT_EQ(models["data"][1]["parent"], "base");
  EXPECT_EQ(s.api->handle(ApiRequest{"GET", "/v1/models/tuned", "", ""}).status, 200);
  // The scheduler refuses an index the model does not hold.
  GenRequest g;
  g.prompt = {1, 2, 3};
  g.adapter = 2;
  const Submitted sub = s.scheduler->submit(std::move(g));
  EXPECT_EQ(sub.error, SubmitError::kInvalid);
  EXPECT_NE(sub.message.find("adapter 2"), std::string::npos) << sub.message;
}

}  // namespace
}  // namespace lutq::server
