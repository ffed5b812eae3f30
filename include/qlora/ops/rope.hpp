// Rotary position embedding, rotate-half (NeoX) layout, as transformers' Gemma3RotaryEmbedding + apply_rotary_pos_emb:
//
//   inv_freq[i] = 1 / theta^(2i/D) / factor      i < D/2  (factor: linear scaling; Gemma 3 4B+ global layers use 8)
//   inv_freq[i] = 0                  i ≥ int(p · D // 2)   proportional RoPE (Gemma 4's full-attention layers,
//                                    transformers' "proportional" rope_type) with partial_rotary_factor p: the exponent
//                                    still divides by the full D; the pairs past the first p · D / 2 pass through
//   angle[t, i] = pos[t] · inv_freq[i]           c = cos(angle), s = sin(angle), both rounded to x's dtype
//   out[t, h, i]       = x[t, h, i] · c − x[t, h, i + D/2] · s
//   out[t, h, i + D/2] = x[t, h, i + D/2] · c + x[t, h, i] · s
//
// x, out: [T, H, D]; positions: int32 [T], given per token so packed sequences restart at 0. The arithmetic follows
// transformers exactly: inv_freq, positions, angles and cos/sin in float32 (torch's pow equals the fp64 pow rounded
// to float32; the factor divides inv_freq, not the positions), cos/sin cast to x's dtype, then each product and the
// sum rounded to x's dtype (a no-op for fp32; for bf16 it is what torch does). fp64 runs everything in fp64.
// Backward is the transpose, i.e. the rotation by −angle: dx = rope(dy) with s → −s. CUDA: cuda/rope.cuh.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/rope.cuh"
#endif

namespace qlora {

struct RopeParams {
  double theta = 10000;        // rope_theta (Gemma 3: 10 000 local, 1 000 000 global)
  double scaling_factor = 1;   // rope_scaling {"rope_type": "linear", "factor": ...}; 1 = none
  double rotated_fraction = 1; // proportional RoPE's partial_rotary_factor (Gemma 4 full layers: 0.25); 1 = all pairs
};

// inv_freq in the compute type, small enough to pass to a kernel by value (head_dim ≤ 2 · kMaxHalf).
template <class C>
struct RopeFrequencies {
  static constexpr index_t kMaxHalf = 256;
  C inv_freq[kMaxHalf] = {};
  index_t half = 0;  // D / 2
};

template <class C>
RopeFrequencies<C> rope_frequencies(index_t head_dim, const RopeParams& p) {
  if (head_dim <= 0 || head_dim % 2 || head_dim / 2 > RopeFrequencies<C>::kMaxHalf)
    fail("rope", "head_dim ", head_dim, " must be even and at most ", 2 * RopeFrequencies<C>::kMaxHalf);
  if (!(p.theta > 0) || !(p.scaling_factor > 0))
    fail("rope", "theta (", p.theta, ") and scaling factor (", p.scaling_factor, ") must be positive");
  if (!(p.rotated_fraction >= 0 && p.rotated_fraction <= 1))
    fail("rope", "rotated fraction (partial_rotary_factor) ", p.rotated_fraction, " must lie in [0, 1]");
  RopeFrequencies<C> f;
  f.half = head_dim / 2;
  // transformers: int(partial_rotary_factor * head_dim // 2), in double precision
  const auto rotated = static_cast<index_t>(std::floor(p.rotated_fraction * static_cast<double>(head_dim) / 2));
  for (index_t i = 0; i < f.half; ++i) {
    if (i >= rotated) {
      f.inv_freq[i] = 0;  // angle 0: cos 1, sin 0, the pair passes through unchanged
      continue;
    }
    if constexpr (std::is_same_v<C, float>) {  // torch: arange(0, D, 2).float() / D; base ** e; 1.0 / ...; /= factor
      const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
      const float power = static_cast<float>(std::pow(p.theta, static_cast<double>(e)));
      f.inv_freq[i] = 1.0f / power / static_cast<float>(p.scaling_factor);
    } else {
      f.inv_freq[i] = 1 / std::pow(p.theta, static_cast<double>(2 * i) / static_cast<double>(head_dim)) /
                      p.scaling_factor;
    }
  }
  return f;
}

namespace cpu {
// out = rotation of x by +angle (inverse: by −angle, the backward). x, out: [tokens, heads, 2·f.half].
template <class T>
void rope_apply(const T* x, const std::int32_t* positions, const RopeFrequencies<compute_t<T>>& f, T* out,
                index_t tokens, index_t heads, bool inverse) {
  using C = compute_t<T>;
  const index_t half = f.half, d = 2 * half;
#pragma omp parallel for schedule(static) if (tokens * heads * d > (1 << 15))
  for (index_t t = 0; t < tokens; ++t) {
    C cs[RopeFrequencies<C>::kMaxHalf], sn[RopeFrequencies<C>::kMaxHalf];
    const C pos = static_cast<C>(positions[t]);
    for (index_t i = 0; i < half; ++i) {
      const C angle = pos * f.inv_freq[i];
      cs[i] = convert<C>(convert<T>(std::cos(angle)));
      sn[i] = convert<C>(convert<T>(std::sin(angle)));
      if (inverse) sn[i] = -sn[i];
    }
    for (index_t h = 0; h < heads; ++h) {
      const T* xr = x + (t * heads + h) * d;
      T* o = out + (t * heads + h) * d;
      for (index_t i = 0; i < half; ++i) {
        const C x1 = convert<C>(xr[i]), x2 = convert<C>(xr[i + half]);
        o[i] = convert<T>(convert<C>(convert<T>(x1 * cs[i])) - convert<C>(convert<T>(x2 * sn[i])));
        o[i + half] = convert<T>(convert<C>(convert<T>(x2 * cs[i])) + convert<C>(convert<T>(x1 * sn[i])));
      }
    }
  }
}
}  // namespace cpu

QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class Dt, class Dh, class Dd, class Dp>
Tensor<T, Dt, Dh, Dd> rope_run(const Tensor<T, Dt, Dh, Dd>& x, const Tensor<std::int32_t, Dp>& positions,
                               const RopeParams& p, bool inverse) {
  static_assert(extents_compatible_v<Dt, Dp>, "rope: positions and x have different static token counts");
  static_assert(!Dd::is_static || (Dd::value % 2 == 0), "rope: head_dim must be even");
  if (positions.size(0) != x.size(0))
    fail("rope", "positions ", positions.shape().str(), " for x ", x.shape().str(), ": one position per token");
  if (!(positions.device() == x.device()))
    fail("rope", "x on ", x.device().str(), " but positions on ", positions.device().str());
  const auto f = rope_frequencies<compute_t<T>>(x.size(2), p);
  Tensor<T, Dt, Dh, Dd> out(x.shape(), x.device(), uninitialized);  // every element is written
  if (x.numel() == 0) return out;
  if (x.device().is_cpu()) {
    cpu::rope_apply(x.data(), positions.data(), f, out.data(), x.size(0), x.size(1), inverse);
  } else {
    QLORA_ON_CUDA("rope", x.device(),
                  cuda::rope_apply(x.data(), positions.data(), f, out.data(), x.size(0), x.size(1), inverse,
                                   x.device()));
  }
  return out;
}
}  // namespace impl

// out: [T, H, D] = x rotated by pos[t] · inv_freq.
template <class T, class Dt, class Dh, class Dd, class Dp>
Tensor<T, Dt, Dh, Dd> rope_forward(const Tensor<T, Dt, Dh, Dd>& x, const Tensor<std::int32_t, Dp>& positions,
                                   const RopeParams& p) {
  return impl::rope_run(x, positions, p, false);
}

// dx: [T, H, D] = dy rotated back (by −angle).
template <class T, class Dt, class Dh, class Dd, class Dp>
Tensor<T, Dt, Dh, Dd> rope_backward(const Tensor<T, Dt, Dh, Dd>& dy, const Tensor<std::int32_t, Dp>& positions,
                                    const RopeParams& p) {
  return impl::rope_run(dy, positions, p, true);
}

// The differentiable RoPE (positions carry no gradient).
template <class T, class Dt, class Dh, class Dd, class Dp>
Variable<T, Dt, Dh, Dd> rope(const Variable<T, Dt, Dh, Dd>& x, const Tensor<std::int32_t, Dp>& positions,
                             const RopeParams& p) {
  auto backward = [positions, p, xn = x.node()](const Tensor<T, Dt, Dh, Dd>& dy) {
    accumulate_grad(xn, rope_backward(dy, positions, p));
  };
  return make_result("rope", rope_forward(x.value(), positions, p), std::move(backward), x);
}

QLORA_DISPATCH_END
}  // namespace qlora
