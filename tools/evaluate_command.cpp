// qlora evaluate: scores generated answers against references, one example per line (plain text files) or per
// JSONL record ({"prediction": ..., "reference": ...}). Prints corpus BLEU (sacrebleu's definition), mean ROUGE-L
// F1 (rouge-score's) and numeric exact match, and writes them as JSON with --output.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qlora/train/evaluate.hpp>

#include "commands.hpp"

namespace qlora::cli {
namespace {
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("evaluate", path, ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}
}  // namespace

Command add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "Score predictions against references: BLEU, ROUGE-L, numeric exact match");
  struct Options {
    std::string predictions, references, jsonl, output;
  };
  auto opt = std::make_shared<Options>();
  cmd->add_option("--predictions", opt->predictions, "Text file, one prediction per line");
  cmd->add_option("--references", opt->references, "Text file, one reference per line");
  cmd->add_option("--jsonl", opt->jsonl, "JSONL file of {\"prediction\": ..., \"reference\": ...} records instead");
  cmd->add_option("--output", opt->output, "Also write the scores as JSON to this file");
  return [opt]() {
    std::vector<std::string> preds, refs;
    if (!opt->jsonl.empty()) {
      std::ifstream in(opt->jsonl);
      if (!in) fail("evaluate", opt->jsonl, ": cannot open");
      long line_no = 0;
      for (std::string line; std::getline(in, line);) {
        ++line_no;
        if (line.empty()) continue;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
          preds.push_back(j.at("prediction").get<std::string>());
          refs.push_back(j.at("reference").get<std::string>());
        } catch (const nlohmann::json::exception& e) {
          fail("evaluate", opt->jsonl, ":", line_no, ": ", e.what());
        }
      }
    } else {
      if (opt->predictions.empty() || opt->references.empty())
        fail("evaluate", "give --predictions and --references, or --jsonl");
      preds = read_lines(opt->predictions);
      refs = read_lines(opt->references);
    }
    if (preds.size() != refs.size())
      fail("evaluate", preds.size(), " predictions but ", refs.size(), " references");
    if (preds.empty()) fail("evaluate", "no examples to score");
    const auto bleu = metrics::corpus_bleu(preds, refs);
    const double rouge = metrics::mean_rouge_l(preds, refs);
    long exact = 0, with_number = 0;
    for (std::size_t i = 0; i < preds.size(); ++i) {
      if (!metrics::last_number(refs[i])) continue;
      ++with_number;
      exact += metrics::numeric_exact_match(preds[i], refs[i]);
    }
    nlohmann::json scores{{"examples", preds.size()},
                          {"bleu", bleu.score},
                          {"rouge_l", rouge},
                          {"numeric_exact_match", with_number ? static_cast<double>(exact) / with_number : 0.0},
                          {"examples_with_numeric_reference", with_number}};
    std::printf("%s\n", scores.dump(2).c_str());
    if (!opt->output.empty()) {
      std::ofstream out(opt->output);
      out << scores.dump(2) << '\n';
      if (!out) fail("evaluate", opt->output, ": write failed");
    }
    return 0;
  };
}

}  // namespace qlora::cli
