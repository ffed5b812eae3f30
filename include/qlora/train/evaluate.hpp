// Text metrics for evaluating generations, equal to the reference Python packages:
//   corpus BLEU as sacrebleu (13a tokenizer, 4-grams, 'exp' smoothing, brevity penalty, one reference per segment),
//   ROUGE-L as Google's rouge-score (lowercase, non-alphanumerics to spaces, no stemming, LCS F-measure),
//   numeric exact match: the last number in the prediction equals the last number in the reference,
// and perplexity = exp(mean token loss). tests/golden/metrics.py produces the reference scores.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace qlora::metrics {

// sacrebleu's tokenizer_13a: mteval-v13a's language-independent normalisation, then TokenizerRegexp.
inline std::vector<std::string> tokenize_13a(std::string line) {
  auto replace_all = [](std::string& s, std::string_view from, std::string_view to) {
    std::string out;
    std::size_t pos = 0;
    for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(s, pos, hit - pos);
      out.append(to);
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  };
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line.insert(line.begin(), ' ');
  line.push_back(' ');
  // The same four substitutions, in order: punctuation and symbols; '.' and ',' unless preceded by a digit; unless
  // followed by a digit; '-' after a digit.
  static const std::regex symbols(R"(([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40\x2F]))");
  static const std::regex period_after(R"(([^0-9])([\.,]))");
  static const std::regex period_before(R"(([\.,])([^0-9]))");
  static const std::regex dash_after_digit(R"(([0-9])(-))");
  line = std::regex_replace(line, symbols, " $1 ");
  line = std::regex_replace(line, period_after, "$1 $2 ");
  line = std::regex_replace(line, period_before, " $1 $2");
  line = std::regex_replace(line, dash_after_digit, "$1 $2 ");
  std::vector<std::string> tokens;
  std::istringstream in(line);
  for (std::string t; in >> t;) tokens.push_back(t);
  return tokens;
}

struct BleuScore {
  double score = 0;                 // 0..100
  double precisions[4] = {};        // 0..100, smoothed
  double brevity_penalty = 0;
  long hypothesis_length = 0, reference_length = 0;
};

// Corpus BLEU of hypotheses against one reference each (sacrebleu.corpus_bleu(hyps, [refs]) defaults).
inline BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    fail("bleu", hypotheses.size(), " hypotheses but ", references.size(), " references");
  long correct[4] = {}, total[4] = {};
  BleuScore s;
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    const auto hyp = tokenize_13a(hypotheses[i]);
    const auto ref = tokenize_13a(references[i]);
    s.hypothesis_length += static_cast<long>(hyp.size());
    s.reference_length += static_cast<long>(ref.size());
    for (int n = 1; n <= 4; ++n) {
      std::map<std::vector<std::string>, long> ref_counts;
      for (std::size_t k = 0; k + n <= ref.size(); ++k) ++ref_counts[{ref.begin() + k, ref.begin() + k + n}];
      std::map<std::vector<std::string>, long> hyp_counts;
      for (std::size_t k = 0; k + n <= hyp.size(); ++k) ++hyp_counts[{hyp.begin() + k, hyp.begin() + k + n}];
      for (const auto& [gram, count] : hyp_counts) {
        const auto it = ref_counts.find(gram);
        correct[n - 1] += std::min(count, it == ref_counts.end() ? 0L : it->second);
        total[n - 1] += count;
      }
    }
  }
  double smooth = 1.0;
  for (int n = 0; n < 4; ++n) {
    if (total[n] == 0) break;
    if (correct[n] == 0) {
      smooth *= 2;
      s.precisions[n] = 100.0 / (smooth * static_cast<double>(total[n]));
    } else {
      s.precisions[n] = 100.0 * static_cast<double>(correct[n]) / static_cast<double>(total[n]);
    }
  }
  const auto sys = static_cast<double>(s.hypothesis_length), ref = static_cast<double>(s.reference_length);
  s.brevity_penalty = sys < ref ? (sys > 0 ? std::exp(1.0 - ref / sys) : 0.0) : 1.0;
  double log_sum = 0;
  for (double p : s.precisions) log_sum += p > 0 ? std::log(p) : -9999999999.0;
  s.score = s.brevity_penalty * std::exp(log_sum / 4.0);
  return s;
}

// rouge-score's tokenizer without stemming: lowercase, runs of non [a-z0-9] become separators.
inline std::vector<std::string> tokenize_rouge(std::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  for (char c : text) {
    const char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')) {
      current.push_back(l);
    } else if (!current.empty()) {
      tokens.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

struct RougeScore {
  double precision = 0, recall = 0, fmeasure = 0;
};

// ROUGE-L of one prediction against its reference (rouge_scorer.RougeScorer(['rougeL']).score(ref, pred)).
inline RougeScore rouge_l(std::string_view prediction, std::string_view reference) {
  const auto pred = tokenize_rouge(prediction);
  const auto ref = tokenize_rouge(reference);
  if (pred.empty() || ref.empty()) return {};
  std::vector<std::size_t> row(pred.size() + 1, 0), prev(pred.size() + 1, 0);
  for (std::size_t i = 1; i <= ref.size(); ++i) {
    for (std::size_t j = 1; j <= pred.size(); ++j)
      row[j] = ref[i - 1] == pred[j - 1] ? prev[j - 1] + 1 : std::max(row[j - 1], prev[j]);
    std::swap(row, prev);
  }
  const auto lcs = static_cast<double>(prev[pred.size()]);
  RougeScore s;
  s.precision = lcs / static_cast<double>(pred.size());
  s.recall = lcs / static_cast<double>(ref.size());
  s.fmeasure = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
  return s;
}

// The mean ROUGE-L F-measure over pairs.
inline double mean_rouge_l(const std::vector<std::string>& predictions, const std::vector<std::string>& references) {
  if (predictions.size() != references.size())
    fail("rouge", predictions.size(), " predictions but ", references.size(), " references");
  if (predictions.empty()) return 0.0;
  double sum = 0;
  for (std::size_t i = 0; i < predictions.size(); ++i) sum += rouge_l(predictions[i], references[i]).fmeasure;
  return sum / static_cast<double>(predictions.size());
}

// The last number written in `text` ("1,234.5" -> 1234.5 with 1 decimal, "-3", "12%" -> 12), if any.
struct WrittenNumber {
  double value = 0;
  int decimals = 0;
};
inline std::optional<WrittenNumber> last_number(std::string_view text) {
  static const std::regex number(R"([-+]?\$?\d[\d,]*(\.\d+)?|[-+]?\.\d+)");
  std::optional<WrittenNumber> last;
  const std::string s(text);
  for (auto it = std::sregex_iterator(s.begin(), s.end(), number); it != std::sregex_iterator(); ++it) {
    std::string digits;
    for (char c : it->str())
      if (c != ',' && c != '$') digits.push_back(c);
    const std::size_t dot = digits.find('.');
    last = WrittenNumber{std::stod(digits), dot == std::string::npos ? 0 : static_cast<int>(digits.size() - dot - 1)};
  }
  return last;
}

// True when the prediction's last number equals the reference's after rounding the prediction to the reference's
// number of decimals (to 1e-9 relative). A reference without a number is an error.
inline bool numeric_exact_match(std::string_view prediction, std::string_view reference) {
  const auto want = last_number(reference);
  if (!want) fail("exact_match", "the reference has no number: '", reference, "'");
  const auto got = last_number(prediction);
  if (!got) return false;
  const double scale = std::pow(10.0, want->decimals);
  const double rounded = std::round(got->value * scale) / scale;
  return std::abs(rounded - want->value) <= 1e-9 * std::max(1.0, std::abs(want->value));
}

inline double perplexity(double mean_loss) { return std::exp(mean_loss); }

}  // namespace qlora::metrics
