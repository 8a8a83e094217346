// `lutq serve MODEL`: the OpenAI-compatible HTTP server (src/server) over one loaded model.
// SIGINT / SIGTERM start a graceful shutdown (HttpServer: asio's signal_set catches them in
// whichever thread they arrive, OpenBLAS's included); the exit status is then 0. Under
// `mpirun -np N`, rank 0 serves and the other ranks follow its steps (docs/scale-out.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/model_options.h"
#include "lutqfile/adapter.h"
#include "server/api.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace lutq::apps {
namespace {

constexpr int64_t kDefaultCtx = 2048;

struct ServeArgs {
  ModelArgs model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t queue = 16;
  int64_t prefill_chunk = 64;
  std::string model_name;  // "" = the file name
  size_t max_body = 1 << 20;
  int timeout_s = 10;
  int max_connections = 512;
  int shutdown_timeout_s = 10;
  int io_threads = 2;
  std::string api_key;  // also from LUTQ_API_KEY
  bool quiet = false;
  double kv_budget_mib = 0.0;  // > 0: --parallel from this budget and the cache kind's bytes per slot
  std::vector<std::string> adapters;  // --adapters NAME=FILE: per-request scale adapters
};

// Adds each --adapters NAME=FILE to the model as a per-request adapter (Model::add_adapter) and
// returns the names in index order. Errors name the argument: a malformed or repeated name, a name
// taken by the model itself, an adapter file that does not fit the model, a combination the
// adapters cannot serve (tensor parallelism, an XQuant cache).
Result<std::vector<std::string>> add_adapters(model::Model& m, const ServeArgs& a, const model::MemorySpec& kv,
                                              const std::string& model_name) {
  std::vector<std::string> names;
  if (a.adapters.empty()) return names;
  if (a.model.comm != nullptr && a.model.comm->size() > 1) {
    return Status::invalid("--adapters: per-request adapters need the whole model on one process (not under mpirun)");
  }
  if (model::rebuilds_from_layer_inputs(kv.kind)) {
    return Status::invalid("--adapters: --kv-cache " + model::memory_spec_name(kv) +
                           " rebuilds K and V through the model's own k/v layers; use f32, f16, q8 or q4 with adapters");
  }
  for (const std::string& spec : a.adapters) {
    const size_t eq = spec.find('=');
    const std::string name = spec.substr(0, eq);
    const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
    if (eq == std::string::npos || eq + 1 == spec.size() || !name_ok) {
      return Status::invalid("--adapters: '" + spec + "' is not NAME=FILE (NAME of letters, digits, '-', '_', '.')");
    }
    if (name == model_name || std::find(names.begin(), names.end(), name) != names.end()) {
      return Status::invalid("--adapters: the name '" + name + "' is already taken");
    }
    Result<std::shared_ptr<const lutqfile::Adapter>> ad = lutqfile::Adapter::read(spec.substr(eq + 1));
    if (!ad) return Status(ad.status().code(), "--adapters " + name + ": " + ad.status().message());
    Result<model::Model::AddedAdapter> added = m.add_adapter(**ad);
    if (!added) return Status(added.status().code(), "--adapters " + name + ": " + added.status().message());
    std::fprintf(stderr, "lutq: adapter '%s' (%s): %lld layers, %.1f MiB packed%s%s\n", name.c_str(),
                 (*ad)->path().c_str(), static_cast<long long>(added->layers),
                 static_cast<double>(added->bytes) / 1048576.0, (*ad)->description().empty() ? "" : ": ",
                 (*ad)->description().c_str());
    names.push_back(name);
  }
  return names;
}

// Slots of ctx positions that a memory of this kind fits in budget_mib, at most 256. Under tensor
// parallelism every rank holds its share of the KV heads (uneven splits: SmolLM2's 3 over 2 ranks
// give 1 + 2), the budget is per rank, and the slots are those of the rank with the largest share:
// every rank computes its own, and all take the smallest (a collective call: every rank makes it).
Result<int> slots_in_budget(const model::Model& m, const model::MemorySpec& kv, int64_t ctx, double budget_mib,
                            Communicator* comm) {
  int64_t slots = model::sequences_in_budget(kv.kind, m.memory_shape(ctx, 1), kv.options, budget_mib * 1048576.0);
  if (comm != nullptr && comm->size() > 1) {
    const float mine = static_cast<float>(std::min<int64_t>(slots, 1 << 20));
    std::vector<float> all(static_cast<size_t>(comm->size()));
    if (Status st = comm->all_gather(&mine, all.data(), std::vector<int64_t>(all.size(), 1)); !st) return st;
    slots = static_cast<int64_t>(*std::min_element(all.begin(), all.end()));
  }
  if (slots < 1) {
    return Status::invalid("--kv-budget: " + std::to_string(budget_mib) + " MiB holds no slot of " +
                           std::to_string(ctx) + " positions with --kv-cache " + model::memory_spec_name(kv) +
                           (comm != nullptr && comm->size() > 1 ? " on every rank" : ""));
  }
  return static_cast<int>(std::min<int64_t>(slots, 256));
}

// The options' own checks (usage errors).
Status check_args(const ServeArgs& a) {
  if (Status st = validate_model_args(a.model); !st) return st;
  if (!(a.kv_budget_mib >= 0.0)) return Status::invalid("--kv-budget: must be >= 0");
  if (a.parallel < 1 || a.parallel > 256) return Status::invalid("--parallel: must be in 1..256");
  if (a.queue < 0 || a.queue > 4096) return Status::invalid("--queue: must be in 0..4096");
  if (a.port < 0 || a.port > 65535) return Status::invalid("--port: must be in 0..65535");
  if (a.prefill_chunk < 1) return Status::invalid("--prefill-chunk: must be >= 1");
  if (a.timeout_s < 1) return Status::invalid("--timeout: must be >= 1");
  if (a.max_connections < 1) return Status::invalid("--max-connections: must be >= 1");
  if (a.shutdown_timeout_s < 0) return Status::invalid("--shutdown-timeout: must be >= 0");
  if (a.io_threads < 1 || a.io_threads > 64) return Status::invalid("--io-threads: must be in 1..64");
  return Status::ok();
}

int serve(const ServeArgs& a) {
  if (Status st = check_args(a); !st) return report_error(st, kExitUsage);

  // A client that goes away mid-write must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);

  auto loaded = load_model(a.model);
  if (!loaded) return report_error(loaded.status(), kExitFailure);
  LoadedModel& lm = **loaded;
  server::SchedulerOptions so;
  so.ctx = a.model.ctx > 0 ? a.model.ctx : std::min(kDefaultCtx, lm.model->config().context_length);
  so.kv_cache = kv_cache_spec(a.model);
  so.parallel = a.parallel;
  if (a.kv_budget_mib > 0.0) {
    Result<int> slots = slots_in_budget(*lm.model, so.kv_cache, so.ctx, a.kv_budget_mib, a.model.comm);
    if (!slots) return report_error(slots.status(), kExitUsage);  // every rank returns: same inputs
    so.parallel = *slots;
  }
  // Tensor parallelism: rank 0 serves and schedules; the other ranks run its steps on their shard.
  if (a.model.comm != nullptr && a.model.comm->rank() != 0) return follow_rank0(lm, *a.model.comm);
  model::StepLeader steps(*lm.model, a.model.comm);
  so.queue_limit = a.queue;
  so.prefill_chunk = a.prefill_chunk;
  so.steps = steps.broadcasting() ? &steps : nullptr;
  server::ApiOptions api_options;
  api_options.model_name =
      a.model_name.empty() ? std::filesystem::path(a.model.path).filename().string() : a.model_name;
  Result<std::vector<std::string>> adapters = add_adapters(*lm.model, a, so.kv_cache, api_options.model_name);
  if (!adapters) return report_error(adapters.status(), kExitUsage);
  api_options.adapters = std::move(*adapters);
  server::Metrics metrics;
  auto scheduler = server::Scheduler::create(*lm.model, *lm.tokenizer, *lm.pool, so, metrics);
  if (!scheduler) return report_error(scheduler.status(), kExitFailure);

  api_options.api_key = a.api_key;
  if (api_options.api_key.empty()) {
    if (const char* env = std::getenv("LUTQ_API_KEY")) api_options.api_key = env;
  }
  server::Api api(**scheduler, *lm.tokenizer, metrics, api_options);
  server::HttpOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.max_body_bytes = a.max_body;
  ho.header_timeout_s = a.timeout_s;
  ho.body_timeout_s = a.timeout_s;
  ho.write_timeout_s = a.timeout_s;
  ho.max_connections = a.max_connections;
  ho.shutdown_timeout_s = a.shutdown_timeout_s;
  ho.io_threads = a.io_threads;
  ho.stop_on_signals = true;
  ho.log_requests = !a.quiet;
  server::HttpServer http(api, **scheduler, metrics, ho);
  Result<int> port = http.bind();
  if (!port) return report_error(port.status(), kExitFailure);
  const std::string kv_where = steps.broadcasting() ? " on rank 0" : "";
  std::fprintf(stderr, "lutq: serving %s on http://%s:%d (%d slots x %lld tokens, KV cache %s %.1f MiB%s, queue %lld%s)\n",
               api_options.model_name.c_str(), a.host.c_str(), *port, so.parallel, static_cast<long long>(so.ctx),
               model::memory_spec_name(so.kv_cache).c_str(),
               static_cast<double>(model::memory_bytes(so.kv_cache.kind, lm.model->memory_shape(so.ctx, so.parallel),
                                                       so.kv_cache.options)) / 1048576.0,
               kv_where.c_str(),
               static_cast<long long>(so.queue_limit), api_options.api_key.empty() ? "" : ", API key required");
  std::fflush(stderr);

  const Status st = http.serve();
  (*scheduler)->stop();
  steps.stop();  // the follower ranks return
  if (!st) return report_error(st, kExitFailure);
  if (steps.broadcasting()) {
    const auto [n, bytes] = steps.sent();
    std::fprintf(stderr, "lutq: %lld steps broadcast to %d ranks, %lld bytes (%.1f per step)\n",
                 static_cast<long long>(n), a.model.comm->size() - 1, static_cast<long long>(bytes),
                 n > 0 ? static_cast<double>(bytes) / static_cast<double>(n) : 0.0);
  }
  std::fprintf(stderr, "lutq: stopped\n");
  return 0;
}

}  // namespace

Subcommand register_serve(CLI::App& app, Communicator& comm) {
  auto args = std::make_shared<ServeArgs>();
  args->model.comm = &comm;
  CLI::App* sub = app.add_subcommand(
      "serve",
      "OpenAI-compatible HTTP server: POST /v1/chat/completions and /v1/completions (streaming or\n"
      "not), GET /v1/models, /health, /metrics (Prometheus) and a chat page at /. Sequences are\n"
      "decoded together (continuous batching) in --parallel slots of --ctx tokens each.");
  add_model_options(sub, args->model, "2048 per slot (at most the trained context)");
  sub->add_option("--host", args->host, "Address to listen on")->default_str("127.0.0.1");
  sub->add_option("--port", args->port, "Port (0 = any free port)")->default_str("8080");
  sub->add_option("--parallel", args->parallel, "Sequence slots decoded together (each holds a KV cache of --ctx)")
      ->type_name("N")->default_str("4");
  sub->add_option("--kv-budget", args->kv_budget_mib,
                  "MiB for the attention memory: --parallel becomes the slots of --ctx that fit it with the\n"
                  "--kv-cache kind's bytes per token (e.g. --kv-cache q4 serves ~7x the f32 slots); under\n"
                  "mpirun, per rank: the slots that fit the rank holding the most KV heads")
      ->type_name("MIB");
  sub->add_option("--queue", args->queue, "Requests that may wait for a slot; beyond that: HTTP 429")
      ->type_name("N")->default_str("16");
  sub->add_option("--prefill-chunk", args->prefill_chunk, "Prompt tokens per prefill step between decode steps")
      ->type_name("N")->default_str("64");
  sub->add_option("--model-name", args->model_name, "Model id reported by /v1/models")->default_str("the file name");
  sub->add_option("--max-body", args->max_body, "Largest request body in bytes (HTTP 413 beyond)")->default_str("1048576");
  sub->add_option("--timeout", args->timeout_s,
                  "Seconds for a whole request head, for a whole body, and for each write (slow clients are dropped)")
      ->default_str("10");
  sub->add_option("--max-connections", args->max_connections, "Open connections at most (beyond: 503 and close)")
      ->default_str("512");
  sub->add_option("--shutdown-timeout", args->shutdown_timeout_s,
                  "On SIGINT/SIGTERM: seconds requests in progress get to finish before they are cancelled")
      ->default_str("10");
  sub->add_option("--io-threads", args->io_threads, "Threads serving connections (event-driven)")->default_str("2");
  sub->add_option("--api-key", args->api_key,
                  "Require 'Authorization: Bearer KEY' on every route but /health and / (default: $LUTQ_API_KEY)");
  sub->add_option("--adapters", args->adapters,
                  "Per-request scale adapters (from `lutq tune --adapter-out`), each NAME=FILE: a request's\n"
                  "\"adapter\": \"NAME\" (or \"model\": \"NAME\") runs with that adapter's scales, other\n"
                  "requests with the model's own, all batched together; each costs the packed bytes of the\n"
                  "layers it changes (not with an XQuant --kv-cache or under mpirun)")
      ->type_name("NAME=FILE")
      ->delimiter(',');
  sub->add_flag("--quiet", args->quiet, "No request log (one line per request on stderr otherwise)");
  return Subcommand{sub, [args] { return serve(*args); }, /*tensor_parallel=*/true};
}

}  // namespace lutq::apps
