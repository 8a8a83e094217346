// Structured output and tool calls through the Api and the scheduler (no sockets): a tiny random
// model over a byte-level vocabulary (any text encodes, so the grammar alone decides), and with
// LUTQ_MODEL_GGUF the real SmolLM2: the reply validates against the schema / is a tool call of
// the named tool with arguments that validate. Plus the reply shapes of parsed tool calls.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gen/bpe.h"
#include "io/gguf_file.h"
#include "server/api.h"
#include "support/schema_check.h"
#include "support/byte_vocab.h"
#include "support/tiny_llama.h"

namespace lutq::server {
namespace {

using nlohmann::ordered_json;

using testing::byte_vocab;

struct Served {
  Served(const model::Model& m, const gen::Tokenizer& t, int64_t ctx) {
    SchedulerOptions so;
    so.parallel = 3;
    so.ctx = ctx;
    scheduler = std::move(*Scheduler::create(m, t, pool, so, metrics));
    api = std::make_unique<Api>(*scheduler, t, metrics, ApiOptions{"m", "", {}});
  }
  ApiReply submit(const std::string& body) { return api->handle(ApiRequest{"POST", "/v1/chat/completions", body, ""}); }
  // The whole reply body of a chat request (streams: the concatenated events).
  std::string chat(const std::string& body) { return finish(submit(body)); }
  std::string finish(const ApiReply& r) {
    if (!r.job) return r.body;
    std::string text, events = r.stream ? stream_open(r) : "";
    // Generous: the real model under ASan on a loaded machine (ctest's limit is 600 s).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(450);
    JobUpdate u;
    do {
      u = r.job->wait(std::chrono::milliseconds(50));
      text += u.text;
      if (r.stream) events += stream_text(r, u.text);
    } while (!u.finished && std::chrono::steady_clock::now() < deadline);
    EXPECT_TRUE(u.finished);
    return r.stream ? events + stream_close(r, u) : full_reply(r, text, u).body;
  }
  ThreadPool pool{2};
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Api> api;
};

struct Tiny {
  io::GgufFile gguf = [] {
    testing::TinySpec s = testing::small_tiny_spec();
    s.n_vocab = 260;
    s.ctx = 1024;  // tools in the prompt: ~700 byte tokens
    return testing::tiny_llama_gguf(s);
  }();
  ThreadPool load_pool{1};
  model::Model model = std::move(*model::Model::load(gguf, model::LoadOptions{}, load_pool));
  gen::Tokenizer tok{byte_vocab()};
};

const char* const kPerson = R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},
    "age":{"type":"integer"},"pets":{"type":"array","items":{"enum":["cat","dog"]},"maxItems":2},
    "home":{"$ref":"#/$defs/city"}},"required":["name","age","pets"],"additionalProperties":false,
    "$defs":{"city":{"type":"object","properties":{"city":{"type":"string","maxLength":10}},"required":["city"]}}})";

const char* const kWeather = R"({"type":"function","function":{"name":"get_weather","description":"The weather of a city",
    "parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":20},
    "unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}})";

std::string schema_request(int seed, const std::string& content, int max_tokens = 160) {
  return R"({"messages":[{"role":"user","content":")" + content + R"("}],"max_tokens":)" + std::to_string(max_tokens) +
         R"(,"temperature":0.8,"seed":)" +
         std::to_string(seed) + R"(,"response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,
         "schema":)" + kPerson + "}}}";
}

// A finished reply's content validates (a reply cut by max_tokens may be partial, as OpenAI's).
void expect_valid_reply(const std::string& body, int& complete) {
  const ordered_json r = ordered_json::parse(body);
  ASSERT_TRUE(r.contains("choices")) << body;
  const ordered_json& choice = r["choices"][0];
  if (choice["finish_reason"] == "length") return;
  const ordered_json v = ordered_json::parse(choice["message"]["content"].get<std::string>(), nullptr, false);
  ASSERT_FALSE(v.is_discarded()) << body;
  const ordered_json schema = ordered_json::parse(kPerson);
  EXPECT_TRUE(testing::schema_valid(v, schema, schema)) << body;
  ++complete;
}

void expect_weather_call(const std::string& body) {
  const ordered_json r = ordered_json::parse(body);
  ASSERT_TRUE(r.contains("choices")) << body;
  const ordered_json& choice = r["choices"][0];
  ASSERT_EQ(choice["finish_reason"], "tool_calls") << body;
  EXPECT_TRUE(choice["message"]["content"].is_null());
  const ordered_json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_TRUE(call["id"].get<std::string>().starts_with("call_"));
  EXPECT_EQ(call["function"]["name"], "get_weather");
  const ordered_json args = ordered_json::parse(call["function"]["arguments"].get<std::string>());
  const ordered_json params = ordered_json::parse(kWeather)["function"]["parameters"];
  EXPECT_TRUE(testing::schema_valid(args, params, params)) << body;
}

TEST(ApiStructured, JsonSchemaOnARandomModelValidates) {
  Tiny tiny;
  Served s(tiny.model, tiny.tok, 512);
  int complete = 0;
  std::vector<ApiReply> replies;  // generated side by side
  for (int seed = 1; seed <= 6; ++seed) replies.push_back(s.submit(schema_request(seed, "x")));
  for (const ApiReply& r : replies) expect_valid_reply(s.finish(r), complete);
  EXPECT_GT(complete, 0);
}

TEST(ApiStructured, RequiredToolCallOnARandomModel) {
  Tiny tiny;
  Served s(tiny.model, tiny.tok, 1024);
  const std::string tools = std::string(R"("tools":[)") + kWeather + "]";
  for (const char* choice : {R"("required")", R"({"type":"function","function":{"name":"get_weather"}})"}) {
    expect_weather_call(s.chat(R"({"messages":[{"role":"user","content":"w"}],"max_tokens":120,"temperature":0.5,
        "seed":3,"tool_choice":)" + std::string(choice) + "," + tools + "}"));
  }
  // Streamed: one tool_calls delta, then finish_reason tool_calls.
  const std::string events = s.chat(R"({"messages":[{"role":"user","content":"w"}],"max_tokens":120,"seed":3,
      "stream":true,"tool_choice":"required",)" + tools + "}");
  EXPECT_NE(events.find(R"("tool_calls":[{"function":{"arguments":)"), std::string::npos) << events;
  EXPECT_NE(events.find(R"("finish_reason":"tool_calls")"), std::string::npos) << events;
  EXPECT_EQ(events.find("<tool_call>"), std::string::npos) << events;
  EXPECT_TRUE(events.ends_with("data: [DONE]\n\n"));
}

TEST(ApiStructured, AutoReplyShapes) {
  ApiReply pending;
  pending.meta = ResponseMeta{Endpoint::kChat, "chatcmpl-7", "m", 0};
  const ordered_json spec = ordered_json::parse(kWeather);
  pending.tools = std::make_shared<const std::vector<ToolDef>>(
      std::vector<ToolDef>{ToolDef{"get_weather", spec, spec["function"]["parameters"]}});
  JobUpdate done;
  done.finished = true;
  const ordered_json call = ordered_json::parse(
      full_reply(pending, "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", done).body);
  EXPECT_EQ(call["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(call["choices"][0]["message"]["content"], "Sure.");
  EXPECT_EQ(call["choices"][0]["message"]["tool_calls"][0]["id"], "call_7_0");
  EXPECT_EQ(call["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], R"({"city":"Oslo"})");
  const ordered_json text = ordered_json::parse(full_reply(pending, "<tool_call>\n{\"name\": \"x\"}", done).body);
  EXPECT_EQ(text["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(text["choices"][0]["message"]["content"], "<tool_call>\n{\"name\": \"x\"}");
  EXPECT_FALSE(text["choices"][0]["message"].contains("tool_calls"));
  // Streamed: the malformed call is sent as text at the end.
  pending.stream = true;
  pending.tool_stream = std::make_shared<ToolStream>();
  std::string events = stream_text(pending, "Hi <tool_call>{\"name\": ");
  EXPECT_NE(events.find(R"("content":"Hi ")"), std::string::npos) << events;
  events = stream_close(pending, done);
  EXPECT_NE(events.find(R"("content":"<tool_call>{\"name\": ")"), std::string::npos) << events;
  EXPECT_NE(events.find(R"("finish_reason":"stop")"), std::string::npos) << events;
}

// The real model, when LUTQ_MODEL_GGUF names it.
TEST(ApiStructured, RealModelJsonSchemaAndToolCall) {
  const char* env = std::getenv("LUTQ_MODEL_GGUF");
  if (env == nullptr || *env == '\0' || !std::filesystem::exists(env)) {
    GTEST_SKIP() << "LUTQ_MODEL_GGUF not set or missing (scripts/test.sh sets it when the model is fetched)";
  }
  Result<io::GgufFile> f = io::GgufFile::open(env);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  ThreadPool load_pool(2);
  Result<model::Model> m = model::Model::load(*f, model::LoadOptions{}, load_pool);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  Result<gen::Tokenizer> tok = gen::Tokenizer::from_checkpoint(*f);
  ASSERT_TRUE(tok.is_ok()) << tok.status().message();
  Served s(*m, *tok, 1024);
  // Side by side in the scheduler's slots: two schema replies and one tool call.
  const ApiReply a = s.submit(schema_request(1, "Describe Ann, 31, who has a cat, as JSON.", 96));
  const ApiReply b = s.submit(schema_request(2, "Describe Bob, 40, who has two dogs, as JSON.", 96));
  const ApiReply call = s.submit(std::string(R"({"messages":[{"role":"user","content":"What is the weather in Paris?"}],
      "max_tokens":64,"temperature":0,"tool_choice":"required","tools":[)") + kWeather + "]}");
  int complete = 0;
  expect_valid_reply(s.finish(a), complete);
  expect_valid_reply(s.finish(b), complete);
  EXPECT_GT(complete, 0);
  expect_weather_call(s.finish(call));
}

}  // namespace
}  // namespace lutq::server
