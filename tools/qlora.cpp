// qlora: the command-line program. `qlora --help` lists the subcommands; `qlora <command> --help` their options.
// An unknown option is an error that names the nearest known one (a typo never runs with a default instead).
#include <cstdio>
#include <map>
#include <string>

#include <qlora/core/error.hpp>
#include <qlora/train/arguments.hpp>
#if QLORA_HAVE_PARQUET
#include <qlora/data/parquet.hpp>
#endif

#include "commands.hpp"
#include "ranks.hpp"

namespace {
// "--learning-rat" -> "--learning-rate" among the options of the subcommands that were given.
std::string nearest_option(const CLI::App& app, const std::string& unknown) {
  std::string best;
  std::size_t best_distance = 4;  // suggest only close names
  for (const CLI::App* sub : app.get_subcommands())
    for (const CLI::Option* opt : sub->get_options())
      for (const std::string& name : opt->get_lnames()) {
        const std::size_t d = qlora::detail::edit_distance(unknown, "--" + name);
        if (d < best_distance) {
          best_distance = d;
          best = "--" + name;
        }
      }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
#if QLORA_HAVE_PARQUET
  qlora::install_parquet_reader();
#endif
  CLI::App app{"qlora: QLoRA fine-tuning of Gemma models in C++ and CUDA"};
  app.require_subcommand(1);
  std::map<std::string, qlora::cli::Command> commands;
  commands["evaluate"] = qlora::cli::add_evaluate_command(app);
  commands["finetune"] = qlora::cli::add_finetune_command(app);
  commands["generate"] = qlora::cli::add_generate_command(app);
  commands["merge"] = qlora::cli::add_merge_command(app);
  commands["export"] = qlora::cli::add_export_command(app);
  commands["info"] = qlora::cli::add_info_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    for (const std::string& extra : app.remaining(true)) {
      if (extra.rfind("--", 0) != 0) continue;
      const std::string name = extra.substr(0, extra.find('='));
      const std::string near = nearest_option(app, name);
      std::fprintf(stderr, "qlora: unknown option %s%s%s%s\n", name.c_str(), near.empty() ? "" : "; did you mean ",
                   near.c_str(), near.empty() ? " (see --help)" : "?");
      return 2;
    }
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    std::string launcher;
    if (qlora::cli::launcher_ranks(&launcher) > 1 && !app.got_subcommand("finetune"))
      qlora::fail("qlora", "started by an MPI launcher (", launcher, "): only finetune runs data parallel; run the "
                  "other commands as one process");
    for (const auto& [name, run] : commands)
      if (app.got_subcommand(name)) return run();
  } catch (const std::exception& e) {  // qlora::Error and the rest; with several ranks, ends them all
    return qlora::cli::report_error(e.what());
  }
  return 0;
}
