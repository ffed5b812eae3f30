// qlora: the command-line program. `qlora --help` lists the subcommands; `qlora <command> --help` their options.
#include <cstdio>
#include <map>
#include <string>

#include <qlora/core/error.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"qlora: QLoRA fine-tuning of Gemma models in C++ and CUDA"};
  app.require_subcommand(1);
  std::map<std::string, qlora::cli::Command> commands;
  commands["evaluate"] = qlora::cli::add_evaluate_command(app);
  commands["finetune"] = qlora::cli::add_finetune_command(app);
  commands["generate"] = qlora::cli::add_generate_command(app);
  commands["info"] = qlora::cli::add_info_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& [name, run] : commands)
      if (app.got_subcommand(name)) return run();
  } catch (const qlora::Error& e) {
    std::fprintf(stderr, "qlora: %s\n", e.what());
    return 1;
  }
  return 0;
}
