// Dropout with a counter-based mask: y = x * keep / (1 - p), keep = [uniform01(stream, i) >= p].
// The mask is a pure function of (stream.seed, stream.offset, i) (core/random.hpp), so it is identical on the CPU
// and the GPU and is never stored: backward regenerates it, dx = dy * keep / (1 - p). The caller gives each
// application its own offset (e.g. step * layers + layer) and passes p = 0 (or skips the op) in evaluation.
//
// Batch rows. An input made of batch rows of `row_elements` elements each (tokens per row × features) may name its
// rows' global index: element k of row b then draws index ((first_row + b) << 40) | k. Its mask is then the same
// however much padding the batch has and however the batch's rows are split between data-parallel ranks (a rank
// with rows 2..3 of a micro-batch draws what one process with rows 0..3 draws for them). row_elements 0: the input
// is one row (index = element, the plain layout).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../autograd/variable.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/dropout.cuh"
#endif

namespace qlora {

struct DropoutParams {
  float p = 0;          // probability of dropping an element, in [0, 1)
  RandomStream stream;  // seed and offset of this application's mask
  std::uint64_t row_elements = 0;  // elements per batch row (0: one row)
  std::uint64_t first_row = 0;     // global index of the input's first batch row
};

// How a [tokens, features] input is made of batch rows (what a model knows of its batch and a LoRA layer does not).
struct DropoutRows {
  index_t tokens_per_row = 0;   // T of the [B, T] batch (0: not given, the input is one row)
  std::uint64_t first_row = 0;  // global index of the batch's first row (a data-parallel rank's offset)
};

inline constexpr int kDropoutRowShift = 40;  // a batch row holds < 2^40 elements

// The draw index of element i of the input.
QLORA_HD inline std::uint64_t dropout_index(const DropoutParams& d, std::uint64_t i) {
  if (d.row_elements == 0) return i;
  return ((d.first_row + i / d.row_elements) << kDropoutRowShift) | (i % d.row_elements);
}

QLORA_HD inline bool dropout_keep(const DropoutParams& d, std::uint64_t index) {
  return uniform01(d.stream, index) >= d.p;
}

namespace cpu {
// out[i] = in[i] * keep(i) / (1 - p): forward (in = x) and backward (in = dy) are the same map. One Philox call
// gives the draws of four consecutive elements (uniform01 uses word i % 4 of counter i / 4); the loop runs
// kDropoutLanes counters at a time through philox4x32_10_lanes (vectorised), i.e. 64 elements per batch.
inline constexpr int kDropoutLanes = 16;

// Elements [0, n) drawing indices first_index + k (first_index a multiple of 4).
template <class T>
void dropout_apply_run(const DropoutParams& d, const T* in, T* out, index_t n, std::uint64_t first_index) {
  using C = compute_t<T>;
  const C scale = C(1) / (C(1) - static_cast<C>(d.p));
  // keep ⟺ (r >> 8) · 2⁻²⁴ ≥ p ⟺ (r >> 8) ≥ ⌈p · 2²⁴⌉ (both sides exact): an integer compare that vectorises.
  const auto threshold = static_cast<std::uint32_t>(std::ceil(static_cast<double>(d.p) * 16777216.0));
  constexpr index_t per_batch = 4 * kDropoutLanes;
  const index_t batches = (n + per_batch - 1) / per_batch;
  const auto seed0 = static_cast<std::uint32_t>(d.stream.seed), seed1 = static_cast<std::uint32_t>(d.stream.seed >> 32);
  const auto offset0 = static_cast<std::uint32_t>(d.stream.offset), offset1 = static_cast<std::uint32_t>(d.stream.offset >> 32);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t b = 0; b < batches; ++b) {
    std::uint32_t c[4][kDropoutLanes];
    for (int j = 0; j < kDropoutLanes; ++j) {
      const auto counter = first_index / 4 + static_cast<std::uint64_t>(b * kDropoutLanes + j);
      c[0][j] = static_cast<std::uint32_t>(counter);
      c[1][j] = static_cast<std::uint32_t>(counter >> 32);
      c[2][j] = offset0;
      c[3][j] = offset1;
    }
    philox4x32_10_lanes(c, seed0, seed1);
    std::uint32_t r[per_batch];  // element i0 + k draws word k % 4 of lane k / 4
    for (int k = 0; k < per_batch; ++k) r[k] = c[k % 4][k / 4];
    const index_t i0 = b * per_batch, count = std::min(per_batch, n - i0);
    for (index_t k = 0; k < count; ++k) {
      const bool keep = (r[k] >> 8) >= threshold;
      const C x = convert<C>(in[i0 + k]) * scale;
      out[i0 + k] = convert<T>(keep ? x : C(0));
    }
  }
}

template <class T>
void dropout_apply(const DropoutParams& d, const T* in, T* out, index_t n) {
  if (d.row_elements == 0) return dropout_apply_run(d, in, out, n, 0);
  if (d.row_elements >= (std::uint64_t{1} << kDropoutRowShift))
    fail("dropout", "a batch row of ", d.row_elements, " elements is past the 2^40 of the row layout");
  const auto row = static_cast<index_t>(d.row_elements);
  for (index_t at = 0, b = 0; at < n; at += row, ++b)
    dropout_apply_run(d, in + at, out + at, std::min(row, n - at),
                      (d.first_row + static_cast<std::uint64_t>(b)) << kDropoutRowShift);
}
}  // namespace cpu

QLORA_DISPATCH_BEGIN

template <class T, class... Ds>
Tensor<T, Ds...> dropout_apply(const DropoutParams& d, const Tensor<T, Ds...>& in) {
  if (!(d.p >= 0 && d.p < 1)) fail("dropout", "p must be in [0, 1), got ", d.p);
  Tensor<T, Ds...> out(in.shape(), in.device(), uninitialized);  // every element is written
  if (in.device().is_cpu()) {
    cpu::dropout_apply(d, in.data(), out.data(), in.numel());
  } else {
    QLORA_ON_CUDA("dropout", in.device(), cuda::dropout_apply(d, in.data(), out.data(), in.numel(), in.device()));
  }
  return out;
}

// The differentiable dropout; p == 0 returns x itself.
template <class T, class... Ds>
Variable<T, Ds...> dropout(const Variable<T, Ds...>& x, const DropoutParams& d) {
  if (d.p == 0) return x;
  return make_result("dropout", dropout_apply(d, x.value()), [d, xn = x.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, dropout_apply(d, dy));
  }, x);
}

QLORA_DISPATCH_END
}  // namespace qlora
