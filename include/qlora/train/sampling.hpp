// Choosing the next token from a row of logits, as transformers' generate() does with its logits processors:
// temperature (divide), top-k (keep the k largest), top-p (keep the smallest set of most likely tokens whose
// probability reaches p, always at least one), then sample from the softmax; temperature 0 (or do_sample = false)
// is greedy argmax. Draws come from the counter-based generator (core/random.hpp), so a seed reproduces a generation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"

namespace qlora {

struct SamplingConfig {
  bool do_sample = false;   // false: greedy
  double temperature = 1.0;
  index_t top_k = 50;       // 0: off (transformers' default is 50)
  double top_p = 1.0;       // 1: off
  std::uint64_t seed = 0;
};

inline void validate(const SamplingConfig& c) {
  if (c.do_sample && !(c.temperature > 0)) fail("generate", "temperature must be > 0 when sampling, got ", c.temperature);
  if (c.top_k < 0) fail("generate", "top_k must not be negative");
  if (!(c.top_p > 0 && c.top_p <= 1)) fail("generate", "top_p must be in (0, 1], got ", c.top_p);
}

// The index of the largest logit (the first one on ties, as torch.argmax).
inline std::int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) fail("generate", "empty logits");
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Next token for `logits` ([vocab]); `draw` numbers the draw (e.g. the position) so each step uses fresh randomness.
inline std::int32_t sample_next(std::span<const float> logits, const SamplingConfig& c, std::uint64_t draw) {
  if (!c.do_sample) return argmax(logits);
  for (float l : logits)
    if (std::isnan(l)) fail("generate", "the logits contain NaN");
  const index_t v = static_cast<index_t>(logits.size());
  std::vector<std::int32_t> order(static_cast<std::size_t>(v));
  std::iota(order.begin(), order.end(), 0);
  const index_t k = c.top_k > 0 ? std::min(c.top_k, v) : v;
  // Candidates sorted by logit, descending (ties by index, so the choice is deterministic).
  auto by_logit = [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  order.resize(static_cast<std::size_t>(k));
  std::vector<double> p(order.size());
  const double top = logits[order[0]] / c.temperature;
  double z = 0;
  for (std::size_t i = 0; i < order.size(); ++i) z += (p[i] = std::exp(logits[order[i]] / c.temperature - top));
  std::size_t keep = order.size();
  if (c.top_p < 1.0) {
    double cumulative = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      cumulative += p[i] / z;
      if (cumulative >= c.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (std::size_t i = 0; i < keep; ++i) kept += p[i];
  const double u = static_cast<double>(uniform01({c.seed, 0x5a3a}, draw)) * kept;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace qlora
