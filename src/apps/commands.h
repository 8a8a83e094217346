// The subcommands of the `lutq` program. Each lives in its own *_cmd.cc file and registers itself
// on the top-level CLI11 app through one hook declared here; main.cc runs the one that was parsed.
#pragma once

#include <functional>

#include "core/communicator.h"
#include "core/status.h"

namespace CLI {
class App;
}

namespace lutq::apps {

constexpr const char* kVersion = "0.1.0";

// Exit codes: 0 success, 1 a failure while running, 2 a usage error (bad option value).
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// A registered subcommand: its CLI11 node and what to run once the command line parsed into it.
struct Subcommand {
  CLI::App* cli = nullptr;
  std::function<int()> run;  // returns the exit code
  bool tensor_parallel = false;  // runs split over the ranks of `mpirun -np N` (docs/scale-out.md)
};

// Prints "lutq: error: <message>" to stderr and returns the exit code to use.
int report_error(const Status& status, int exit_code);

// Registration hooks, one per subcommand file (quantize, run, chat, perplexity, bench, serve and
// inspect join here).
Subcommand register_bench_kernels(CLI::App& app);
Subcommand register_run(CLI::App& app, Communicator& comm);
Subcommand register_chat(CLI::App& app, Communicator& comm);
Subcommand register_perplexity(CLI::App& app, Communicator& comm);
Subcommand register_quantize(CLI::App& app);
Subcommand register_inspect(CLI::App& app);
Subcommand register_bench(CLI::App& app, Communicator& comm);
Subcommand register_serve(CLI::App& app, Communicator& comm);
Subcommand register_tune(CLI::App& app);
Subcommand register_moefy(CLI::App& app);

}  // namespace lutq::apps
