// Scaled token embedding, as transformers' Gemma3TextScaledWordEmbedding:
//
//   y[t, c] = table[ids[t], c] · s        s = sqrt(C) rounded to the table's dtype first
//
// ids: int32 [T], table: [V, C], y: [T, C]. transformers multiplies by `embed_scale.to(weight.dtype)`, so for bf16
// weights s is sqrt(640) -> 25.25 and sqrt(2560) -> 50.5, not 25.298 / 50.596; sqrt(C) is first a float32 tensor, so
// for fp64 tables s = double(float(sqrt(C))). An id outside [0, V) is a qlora::Error naming the id and V.
// Backward (only when the table requires a gradient; the ids have none): d_table[v, c] = Σ_{t: ids[t] = v} s · dy[t, c]
// — a scatter-add; the CPU groups tokens by id and sums each group in the compute type, CUDA uses atomics. As in
// nn.Embedding(padding_idx=pad_token_id), which Gemma 3 uses with pad id 0, the row of `padding_idx` (if ≥ 0) gets
// no gradient; forward still reads it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/embedding.cuh"
#endif

namespace qlora {

// s = sqrt(hidden) as a float32 value, then rounded to T (Gemma3TextModel: embed_scale = hidden_size ** 0.5).
template <class T>
T embedding_normalizer(index_t hidden) {
  return convert<T>(static_cast<float>(std::sqrt(static_cast<double>(hidden))));
}

namespace cpu {
// Index of the first token whose id is outside [0, vocab), or -1.
inline index_t embedding_first_bad_token(const std::int32_t* ids, index_t tokens, index_t vocab) {
  for (index_t t = 0; t < tokens; ++t)
    if (ids[t] < 0 || ids[t] >= vocab) return t;
  return -1;
}

// y[t] = table[ids[t]] · s; ids already checked. ids: [tokens], table: [vocab, cols], y: [tokens, cols].
template <class T>
void embedding_forward(const std::int32_t* ids, const T* table, T* y, index_t tokens, index_t cols, T normalizer) {
  using C = compute_t<T>;
  const C s = convert<C>(normalizer);
#pragma omp parallel for schedule(static) if (tokens * cols > (1 << 16))
  for (index_t t = 0; t < tokens; ++t) {
    const T* row = table + static_cast<index_t>(ids[t]) * cols;
    for (index_t c = 0; c < cols; ++c) y[t * cols + c] = convert<T>(convert<C>(row[c]) * s);
  }
}

// d_table[v] = Σ_{ids[t] = v} s · dy[t]: scaled before summing, as torch's autograd does. Rows of unused ids (and of
// padding_idx) are left as they are: zero in a fresh gradient.
template <class T>
void embedding_backward(const std::int32_t* ids, const T* dy, T* d_table, index_t tokens, index_t cols,
                        T normalizer, index_t padding_idx) {
  using C = compute_t<T>;
  const C s = convert<C>(normalizer);
  std::vector<index_t> order(static_cast<std::size_t>(tokens));  // tokens grouped by id, in token order per id
  std::iota(order.begin(), order.end(), index_t{0});
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return ids[a] < ids[b]; });
  std::vector<index_t> starts;  // first position in `order` of each distinct id
  for (index_t i = 0; i < tokens; ++i)
    if (i == 0 || ids[order[i]] != ids[order[i - 1]]) starts.push_back(i);
  starts.push_back(tokens);
  const auto groups = static_cast<index_t>(starts.size()) - 1;
#pragma omp parallel if (tokens * cols > (1 << 16))
  {
    std::vector<C> acc(static_cast<std::size_t>(cols));
#pragma omp for schedule(dynamic, 8)
    for (index_t g = 0; g < groups; ++g) {
      if (ids[order[starts[g]]] == padding_idx) continue;
      std::fill(acc.begin(), acc.end(), C(0));
      for (index_t i = starts[g]; i < starts[g + 1]; ++i)
        for (index_t c = 0; c < cols; ++c) acc[c] += convert<C>(dy[order[i] * cols + c]) * s;
      T* out = d_table + static_cast<index_t>(ids[order[starts[g]]]) * cols;
      for (index_t c = 0; c < cols; ++c) out[c] = convert<T>(acc[c]);
    }
  }
}
}  // namespace cpu

QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class Dt, class Dv, class Dc>
void embedding_check(const Tensor<std::int32_t, Dt>& ids, const Tensor<T, Dv, Dc>& table) {
  if (!(ids.device() == table.device()))
    fail("embedding", "ids on ", ids.device().str(), " but the table on ", table.device().str());
  if (table.size(0) > std::numeric_limits<std::int32_t>::max())
    fail("embedding", "vocabulary of ", table.size(0), " rows does not fit int32 ids");
}
[[noreturn]] inline void embedding_bad_id(std::int32_t id, index_t token, index_t vocab) {
  fail("embedding", "token ", token, " has id ", id, ", outside the vocabulary of size ", vocab);
}
}  // namespace impl

// y: [T, C] = table[ids] · sqrt(C) (in the table's dtype). ids: int32 [T] on the table's device.
template <class T, class Dt, class Dv, class Dc>
Tensor<T, Dt, Dc> embedding_forward(const Tensor<std::int32_t, Dt>& ids, const Tensor<T, Dv, Dc>& table) {
  impl::embedding_check(ids, table);
  const index_t tokens = ids.size(0), vocab = table.size(0), cols = table.size(1);
  Tensor<T, Dt, Dc> y(Shape<Dt, Dc>(tokens, cols), table.device());
  if (tokens == 0) return y;
  const T s = embedding_normalizer<T>(cols);
  if (table.device().is_cpu()) {
    const index_t bad = cpu::embedding_first_bad_token(ids.data(), tokens, vocab);
    if (bad >= 0) impl::embedding_bad_id(ids.data()[bad], bad, vocab);
    cpu::embedding_forward(ids.data(), table.data(), y.data(), tokens, cols, s);
  } else {
    // the kernel records the first bad token (min over tokens) in a device int; reading it back synchronises
    QLORA_ON_CUDA("embedding", table.device(), Tensor<std::int32_t, Dim<1>> bad(Shape<Dim<1>>{}, table.device());
                  bad.copy_from(Tensor<std::int32_t, Dim<1>>::full(std::numeric_limits<std::int32_t>::max()));
                  cuda::embedding_forward(ids.data(), table.data(), y.data(), tokens, vocab, cols, s, bad.data(),
                                          table.device());
                  const std::int32_t first = bad.to_vector()[0];
                  if (first != std::numeric_limits<std::int32_t>::max())
                      impl::embedding_bad_id(ids[first].item(), first, vocab));
  }
  return y;
}

// d_table: [V, C] for dy: [T, C] (ids checked by the forward pass); row `padding_idx` (if ≥ 0) stays zero.
template <class T, class Dt, class Dv, class Dc, class... Es>
Tensor<T, Dv, Dc> embedding_backward(const Tensor<std::int32_t, Dt>& ids, const Tensor<T, Es...>& dy,
                                     const Shape<Dv, Dc>& table_shape, index_t padding_idx = -1) {
  const index_t tokens = ids.size(0), cols = table_shape[1];
  require(dy.numel() == tokens * cols, "embedding", "backward: dy ", dy.shape().str(), " for ", tokens,
          " tokens of width ", cols);
  Tensor<T, Dv, Dc> d_table(table_shape, dy.device());  // zero-filled: unused rows get no gradient
  if (tokens == 0) return d_table;
  const T s = embedding_normalizer<T>(cols);
  if (dy.device().is_cpu()) {
    cpu::embedding_backward(ids.data(), dy.data(), d_table.data(), tokens, cols, s, padding_idx);
  } else {
    QLORA_ON_CUDA("embedding", dy.device(),
                  cuda::embedding_backward(ids.data(), dy.data(), d_table.data(), tokens, cols, s, padding_idx,
                                           dy.device()));
  }
  return d_table;
}

// The differentiable embedding: records a backward only when the table requires a gradient. padding_idx as in
// nn.Embedding (-1: none; Gemma 3 checkpoints use pad id 0).
template <class T, class Dt, class Dv, class Dc>
Variable<T, Dt, Dc> embedding(const Tensor<std::int32_t, Dt>& ids, const Variable<T, Dv, Dc>& table,
                              index_t padding_idx = -1) {
  auto y = embedding_forward(ids, table.value());
  auto backward = [ids, shape = table.shape(), tn = table.node(), padding_idx](const Tensor<T, Dt, Dc>& dy) {
    accumulate_grad(tn, embedding_backward(ids, dy, shape, padding_idx));
  };
  return make_result("embedding", std::move(y), std::move(backward), table);
}

QLORA_DISPATCH_END
}  // namespace qlora
