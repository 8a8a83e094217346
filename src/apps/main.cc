// The `lutq` command-line program: a CLI11 app whose subcommands each live in their own file
// (commands.h lists the registration hooks).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "comm/make_communicator.h"

namespace lutq::apps {

int report_error(const Status& status, int exit_code) {
  std::fprintf(stderr, "lutq: error: %s\n", status.message().c_str());
  return exit_code;
}

namespace {

int run_main(int argc, char** argv, Communicator& comm) {
  CLI::App app("lutq: LLM inference with BCQ-quantized weights and lookup-table GEMM kernels", "lutq");
  app.set_version_flag("--version", std::string("lutq ") + kVersion);
  app.require_subcommand(1);
  app.footer("Run 'lutq <command> --help' for the options of a command.");

  std::vector<Subcommand> commands;
  commands.push_back(register_quantize(app));
  commands.push_back(register_inspect(app));
  commands.push_back(register_bench(app, comm));
  commands.push_back(register_bench_kernels(app));
  commands.push_back(register_run(app, comm));
  commands.push_back(register_chat(app, comm));
  commands.push_back(register_perplexity(app, comm));
  commands.push_back(register_serve(app, comm));
  commands.push_back(register_tune(app));
  commands.push_back(register_moefy(app));

  if (argc <= 1) {
    std::fputs(app.help().c_str(), stdout);
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "lutq: error: %s\nRun 'lutq --help' for usage.\n", e.what());
    return kExitUsage;
  }
  for (const Subcommand& c : commands) {
    if (!c.cli->parsed()) continue;
    if (comm.size() > 1 && !c.tensor_parallel) {
      return report_error(Status::unsupported("'" + c.cli->get_name() + "' does not run over several ranks (" +
                                              comm.describe() + "); run, chat, serve, perplexity and bench do"),
                          kExitUsage);
    }
    return c.run();
  }
  std::fprintf(stderr, "lutq: error: no command given\nRun 'lutq --help' for usage.\n");
  return kExitUsage;
}

}  // namespace
}  // namespace lutq::apps

// Over several ranks (mpirun -np N): rank 0 prints; a rank whose command fails ends them all,
// so that none waits forever in a collective for it.
int run_with_communicator(int argc, char** argv) {
  lutq::Result<std::unique_ptr<lutq::Communicator>> comm = lutq::comm::make_communicator(&argc, &argv);
  if (!comm) return lutq::apps::report_error(comm.status(), lutq::apps::kExitFailure);
  (*comm)->silence_other_ranks();
  const int code = lutq::apps::run_main(argc, argv, **comm);
  if (code != 0 && (*comm)->size() > 1) {
    (*comm)->abort("the command failed (exit code " + std::to_string(code) + "); ending every rank");
  }
  return code;
}

int main(int argc, char** argv) {
  try {
    return run_with_communicator(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "lutq: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lutq: error: %s\n", e.what());
  }
  return lutq::apps::kExitFailure;
}
