// Samples to batches. A batch is B rows of T tokens, T the longest row in the batch (padding only to that, as
// DataCollatorWithPadding). A row holds one sample, or with packing several whole samples one after another (up to
// max_length tokens, filled in order: a new row starts when the next sample does not fit), with positions restarting
// at 0 and a segment id per sample so attention stays inside each sample (DataCollatorWithFlattening's position_ids).
//
// Labels are aligned with tokens (the loss compares logits at t-1 with labels[t]); the first token of every sample
// has label -100, so no sample is predicted from the one before it in a packed row. Padding: pad id, label -100,
// position 0, segment 0.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "dataset.hpp"

namespace qlora {

struct Batch {
  std::size_t B = 0, T = 0;
  std::vector<std::int32_t> tokens;       // [B, T] row-major: real tokens, then pad id
  std::vector<std::int32_t> labels;       // [B, T]: -100 on prompts, padding and each sample's first token
  std::vector<std::int32_t> positions;    // [B, T]: 0, 1, ... within each sample; 0 on padding
  std::vector<std::int32_t> segment_ids;  // [B, T]: 1, 2, ... for the samples of a row; 0 on padding
  std::vector<std::int32_t> lengths;      // [B]: real tokens in each row
  std::vector<std::size_t> samples;       // the samples in the batch, row by row

  std::size_t at(std::size_t b, std::size_t t) const { return b * T + t; }
  // Whether query token i of row b may attend to key token j: causal, and inside the same sample.
  bool attends(std::size_t b, std::size_t i, std::size_t j) const {
    return j <= i && segment_ids[at(b, i)] != 0 && segment_ids[at(b, i)] == segment_ids[at(b, j)];
  }
  // [B, T] targets for a loss that takes the label of each position itself (ops/cross_entropy.hpp): out[b, t] =
  // labels[b, t + 1], -100 at the end of each row. This is the shift Hugging Face's causal-LM loss does.
  std::vector<std::int32_t> next_token_labels() const {
    std::vector<std::int32_t> out(labels.size(), ignore_index);
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t + 1 < T; ++t) out[at(b, t)] = labels[at(b, t + 1)];
    return out;
  }
  // Tokens that take part in the loss.
  long label_tokens() const {
    return static_cast<long>(
        std::count_if(labels.begin(), labels.end(), [](std::int32_t l) { return l != ignore_index; }));
  }
};

// Builds one batch from rows of sample indices (each row's samples one after another).
inline Batch make_batch(std::span<const Sample> samples, std::span<const std::vector<std::size_t>> rows,
                        std::int32_t pad_id) {
  require(!rows.empty(), "dataset", "a batch needs at least one row");
  Batch batch;
  batch.B = rows.size();
  for (const auto& row : rows) {
    std::size_t length = 0;
    for (std::size_t s : row) {
      require(s < samples.size(), "dataset", "sample ", s, " of a batch row is past the ", samples.size(), " samples");
      length += samples[s].input_ids.size();
    }
    batch.T = std::max(batch.T, length);
  }
  const std::size_t n = batch.B * batch.T;
  batch.tokens.assign(n, pad_id);
  batch.labels.assign(n, ignore_index);
  batch.positions.assign(n, 0);
  batch.segment_ids.assign(n, 0);
  for (std::size_t b = 0; b < batch.B; ++b) {
    std::size_t t = 0;
    std::int32_t segment = 0;
    for (std::size_t s : rows[b]) {
      const Sample& sample = samples[s];
      ++segment;
      for (std::size_t k = 0; k < sample.input_ids.size(); ++k, ++t) {
        batch.tokens[batch.at(b, t)] = sample.input_ids[k];
        batch.labels[batch.at(b, t)] = k == 0 ? ignore_index : sample.labels[k];
        batch.positions[batch.at(b, t)] = static_cast<std::int32_t>(k);
        batch.segment_ids[batch.at(b, t)] = segment;
      }
      batch.samples.push_back(s);
    }
    batch.lengths.push_back(static_cast<std::int32_t>(t));
  }
  return batch;
}

// One sample per row, padded to the longest.
inline Batch pad_batch(std::span<const Sample> samples, std::int32_t pad_id) {
  std::vector<std::vector<std::size_t>> rows(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) rows[i] = {i};
  return make_batch(samples, rows, pad_id);
}

// Groups samples, in order, into rows of at most max_length tokens; a row is closed when the next sample does not fit.
inline std::vector<std::vector<std::size_t>> pack_rows(std::span<const Sample> samples, std::size_t max_length) {
  std::vector<std::vector<std::size_t>> rows;
  std::size_t used = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const std::size_t n = samples[i].input_ids.size();
    if (n > max_length)
      fail("dataset", "sample ", i, " has ", n, " tokens, more than the packing length ", max_length,
           " (tokenize with the same max_length)");
    if (rows.empty() || used + n > max_length) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += n;
  }
  return rows;
}

// The share of one rank of a data-parallel run: global micro-batch m holds rows [m·B·ranks, (m+1)·B·ranks) of the
// epoch, and rank r takes rows [r·B, (r+1)·B) of it (B = per-device batch size). So `ranks` processes with batch B
// see exactly the rows one process with batch B·ranks sees, micro-batch by micro-batch; at the end of an epoch a
// rank may get fewer rows, or none (an empty batch: B = 0, no tokens).
struct RankShare {
  std::size_t rank = 0, ranks = 1;
};

// All batches of an epoch (this rank's share of each), batch_size rows each (the last may be smaller). With
// packing_length, rows are packed first.
inline std::vector<Batch> make_batches(std::span<const Sample> samples, std::size_t batch_size, std::int32_t pad_id,
                                       std::optional<std::size_t> packing_length = std::nullopt, RankShare share = {}) {
  require(batch_size > 0, "dataset", "batch_size must be positive");
  require(share.ranks > 0 && share.rank < share.ranks, "dataset", "rank ", share.rank, " of ", share.ranks, " ranks");
  std::vector<std::vector<std::size_t>> rows;
  if (packing_length) {
    rows = pack_rows(samples, *packing_length);
  } else {
    rows.resize(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) rows[i] = {i};
  }
  std::vector<Batch> batches;
  const std::size_t global = batch_size * share.ranks;
  for (std::size_t r = 0; r < rows.size(); r += global) {
    const std::size_t first = std::min(r + share.rank * batch_size, rows.size());
    const std::size_t count = std::min({batch_size, rows.size() - first, r + global - first});
    batches.push_back(count ? make_batch(samples, std::span(rows).subspan(first, count), pad_id) : Batch{});
  }
  return batches;
}

}  // namespace qlora
