// What a model's forward pass reads: a batch's packed tokens as device tensors (ids, positions, segment ids, shifted
// labels), made from a data/batch.hpp Batch or from one token sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/tensor.hpp"
#include "../data/batch.hpp"

namespace qlora {

// A batch as device tensors of N = B·T packed tokens.
struct ModelInput {
  Tensor<std::int32_t, Dyn> tokens;       // [N]
  Tensor<std::int32_t, Dyn> positions;    // [N]
  Tensor<std::int32_t, Dyn> segment_ids;  // [N]: unique per (row, sample); padding gets its row's own negative id
  Tensor<std::int32_t, Dyn> labels;       // [N]: next-token targets (-100: no loss)
  long label_tokens = 0;
};

inline ModelInput model_input(const Batch& b, Device device = Device::cpu()) {
  const auto n = static_cast<index_t>(b.B * b.T);
  ModelInput in;
  std::vector<std::int32_t> seg(b.segment_ids.size());
  for (std::size_t r = 0; r < b.B; ++r)
    for (std::size_t t = 0; t < b.T; ++t) {
      const std::int32_t s = b.segment_ids[b.at(r, t)];
      seg[b.at(r, t)] = s == 0 ? -static_cast<std::int32_t>(r + 1) : static_cast<std::int32_t>(r * (b.T + 1)) + s;
    }
  auto put = [&](const std::vector<std::int32_t>& v) {
    auto t = Tensor<std::int32_t, Dyn>::from(v, n);
    return t.on(device);
  };
  in.tokens = put(b.tokens);
  in.positions = put(b.positions);
  in.segment_ids = put(seg);
  in.labels = put(b.next_token_labels());
  in.label_tokens = b.label_tokens();
  return in;
}

// One sequence (positions 0.., one segment), for inference and tests.
inline ModelInput model_input(const std::vector<std::int32_t>& ids, Device device = Device::cpu()) {
  Batch b;
  b.B = 1;
  b.T = ids.size();
  b.tokens = ids;
  b.labels.assign(ids.size(), ignore_index);
  b.positions.resize(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) b.positions[i] = static_cast<std::int32_t>(i);
  b.segment_ids.assign(ids.size(), 1);
  return model_input(b, device);
}

}  // namespace qlora
