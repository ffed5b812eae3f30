// BLEU and ROUGE-L equal sacrebleu's and rouge-score's on tests/data/metrics/metrics.json (tests/golden/metrics.py);
// numeric exact match and perplexity by their definitions.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include <qlora/train/evaluate.hpp>

using namespace qlora::metrics;

namespace {
nlohmann::json golden() {
  std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/metrics/metrics.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}
}  // namespace

TEST_SUITE("train") {
  TEST_CASE("corpus BLEU equals sacrebleu") {
    const auto g = golden();
    std::vector<std::string> hyps, refs;
    for (const auto& p : g["pairs"]) {
      hyps.push_back(p["hypothesis"]);
      refs.push_back(p["reference"]);
    }
    const BleuScore s = corpus_bleu(hyps, refs);
    CHECK(s.score == doctest::Approx(g["corpus_bleu"]["score"].get<double>()).epsilon(1e-12));
    CHECK(s.brevity_penalty == doctest::Approx(g["corpus_bleu"]["bp"].get<double>()).epsilon(1e-12));
    CHECK(s.hypothesis_length == g["corpus_bleu"]["sys_len"].get<long>());
    CHECK(s.reference_length == g["corpus_bleu"]["ref_len"].get<long>());
    for (int n = 0; n < 4; ++n)
      CHECK(s.precisions[n] == doctest::Approx(g["corpus_bleu"]["precisions"][n].get<double>()).epsilon(1e-12));
  }

  TEST_CASE("BLEU of each pair alone equals sacrebleu (smoothing and brevity branches)") {
    const auto g = golden();
    for (std::size_t i = 0; i < g["pairs"].size(); ++i) {
      const auto& p = g["pairs"][i];
      const BleuScore s = corpus_bleu({p["hypothesis"].get<std::string>()}, {p["reference"].get<std::string>()});
      INFO("pair " << i << ": " << p["hypothesis"].get<std::string>());
      CHECK(s.score == doctest::Approx(g["pair_bleu"][i]["score"].get<double>()).epsilon(1e-12));
    }
  }

  TEST_CASE("ROUGE-L equals rouge-score for every pair") {
    const auto g = golden();
    for (std::size_t i = 0; i < g["pairs"].size(); ++i) {
      const auto& p = g["pairs"][i];
      const RougeScore s = rouge_l(p["hypothesis"].get<std::string>(), p["reference"].get<std::string>());
      INFO("pair " << i);
      CHECK(s.precision == doctest::Approx(g["rouge_l"][i]["precision"].get<double>()).epsilon(1e-12));
      CHECK(s.recall == doctest::Approx(g["rouge_l"][i]["recall"].get<double>()).epsilon(1e-12));
      CHECK(s.fmeasure == doctest::Approx(g["rouge_l"][i]["fmeasure"].get<double>()).epsilon(1e-12));
    }
  }

  TEST_CASE("numeric exact match compares the last numbers at the reference's precision") {
    CHECK_FALSE(numeric_exact_match("so the margin is 12.4%", "12.5"));
    CHECK(numeric_exact_match("so the margin is 12.49%", "12.5"));  // rounded to the reference's one decimal
    CHECK(numeric_exact_match("the margin is 12.5%.", "The answer is 12.5"));
    CHECK(numeric_exact_match("Revenue: $1,250,000", "1250000"));
    CHECK(numeric_exact_match("about 0.3333", "0.33"));
    CHECK(numeric_exact_match("-3.75", "Answer: -3.75."));
    CHECK_FALSE(numeric_exact_match("no idea", "42"));
    CHECK_THROWS_AS(numeric_exact_match("42", "no number here"), qlora::Error);
  }

  TEST_CASE("perplexity is exp of the mean loss") { CHECK(perplexity(std::log(7.0)) == doctest::Approx(7.0)); }
}
