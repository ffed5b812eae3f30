// GeGLU, Gemma's MLP gate: out = gelu_tanh(gate) · up (transformers: ACT2FN["gelu_pytorch_tanh"], i.e.
// torch.nn.functional.gelu(approximate="tanh")), elementwise over gate, up, out: [..., intermediate].
//
//   gelu_tanh(x) = 0.5 x (1 + tanh(u)),   u = β (x + κ x³),   β = sqrt(2/π), κ = 0.044715
//   gelu_tanh'(x) = 0.5 (1 + tanh u) + 0.5 x (1 − tanh² u) β (1 + 3κ x²)
//   d_gate = dy · up · gelu_tanh'(gate)        d_up = dy · gelu_tanh(gate)
//
// The arithmetic follows torch's CPU kernels in the compute type (fp32; fp64 for fp64) and, for bf16, rounds where
// torch's bf16 ops round: act = bf16(gelu(gate)), out = bf16(act · up); backward d_up = bf16(dy · act),
// d_gate = bf16(gelu'(gate) · bf16(dy · up)). One fused pass forward, one backward (tanh computed once per element,
// vectorised on the CPU); CUDA: cuda/activation.cuh.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"
#include "../core/vector_math.hpp"

namespace qlora {

// β = sqrt(2/π) as torch writes it (M_SQRT2 · M_2_SQRTPI · 0.5, in double) and κ.
inline constexpr double kGeluBeta = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;
inline constexpr double kGeluKappa = 0.044715;

// gelu_tanh and its derivative in the compute type C, written as torch's GeluKernel.cpp evaluates them; the *_from
// forms take t = tanh(u) already computed (the CPU loops compute it vectorised, core/vector_math.hpp).
template <class C>
QLORA_HD inline C gelu_tanh_inner(C x) {  // u
  const C beta = static_cast<C>(kGeluBeta), kappa = static_cast<C>(kGeluKappa);
  const C x_cube = x * x * x;
  return beta * (x + kappa * x_cube);
}
template <class C>
QLORA_HD inline C gelu_tanh_from(C x, C tanh_inner) {
  return C(0.5) * x * (C(1) + tanh_inner);
}
template <class C>
QLORA_HD inline C gelu_tanh_derivative_from(C x, C tanh_inner) {
  const C beta = static_cast<C>(kGeluBeta), kappa = static_cast<C>(kGeluKappa);
  const C x_sq = x * x;
  const C left = C(0.5) * x, right = C(1) + tanh_inner;
  const C left_derivative = C(0.5) * right;
  const C tanh_derivative = C(1) - tanh_inner * tanh_inner;
  const C inner_derivative = beta * (C(1) + C(3) * kappa * x_sq);
  const C right_derivative = left * tanh_derivative * inner_derivative;
  return left_derivative + right_derivative;
}
template <class C>
QLORA_HD inline C gelu_tanh(C x) {
  return gelu_tanh_from(x, std::tanh(gelu_tanh_inner(x)));
}
template <class C>
QLORA_HD inline C gelu_tanh_derivative(C x) {
  return gelu_tanh_derivative_from(x, std::tanh(gelu_tanh_inner(x)));
}

// One element of GeGLU forward and backward from x = gate in the compute type and t = tanh(u(x)), with torch's bf16
// roundings (shared by the CPU loops, which compute t vectorised, and by the per-element forms below).
template <class T, class C>
QLORA_HD inline T geglu_from(C x, C t, T up) {
  const C act = convert<C>(convert<T>(gelu_tanh_from(x, t)));
  return convert<T>(act * convert<C>(up));
}
template <class T, class C>
QLORA_HD inline void geglu_backward_from(C x, C t, T up, T dy, T* d_gate, T* d_up) {
  const C d = convert<C>(dy);
  if (d_up) *d_up = convert<T>(d * convert<C>(convert<T>(gelu_tanh_from(x, t))));
  if (d_gate) *d_gate = convert<T>(gelu_tanh_derivative_from(x, t) * convert<C>(convert<T>(d * convert<C>(up))));
}

// The same for one element on its own (the CUDA kernels).
template <class T>
QLORA_HD inline T geglu_element(T gate, T up) {
  const compute_t<T> x = convert<compute_t<T>>(gate);
  return geglu_from(x, std::tanh(gelu_tanh_inner(x)), up);
}
template <class T>
QLORA_HD inline void geglu_element_backward(T gate, T up, T dy, T* d_gate, T* d_up) {
  const compute_t<T> x = convert<compute_t<T>>(gate);
  geglu_backward_from(x, std::tanh(gelu_tanh_inner(x)), up, dy, d_gate, d_up);
}

}  // namespace qlora

// The kernels call geglu_element(_backward) above, so they are included after them.
#if defined(__CUDACC__)
#include "../cuda/activation.cuh"
#endif

namespace qlora {

namespace cpu {
// The CPU loops run over blocks of kGegluBlock elements: u for the block, its tanh vectorised, then the outputs.
inline constexpr index_t kGegluBlock = 256;

// x[j] = gate[j] in the compute type and t[j] = tanh(u(x[j])), for one block of nb ≤ kGegluBlock elements.
template <class T, class C>
void gelu_block(const T* gate, index_t nb, C* x, C* t) {
  for (index_t j = 0; j < nb; ++j) {
    x[j] = convert<C>(gate[j]);
    t[j] = gelu_tanh_inner(x[j]);
  }
  tanh_n(t, t, nb);
}

// gate, up, out: [n].
template <class T>
void geglu_forward(const T* gate, const T* up, T* out, index_t n) {
  using C = compute_t<T>;
  const index_t blocks = (n + kGegluBlock - 1) / kGegluBlock;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t b = 0; b < blocks; ++b) {
    const index_t i0 = b * kGegluBlock, nb = std::min(kGegluBlock, n - i0);
    C x[kGegluBlock], t[kGegluBlock];
    gelu_block(gate + i0, nb, x, t);
    for (index_t j = 0; j < nb; ++j) out[i0 + j] = geglu_from(x[j], t[j], up[i0 + j]);
  }
}
// d_gate, d_up: [n], either may be null.
template <class T>
void geglu_backward(const T* gate, const T* up, const T* dy, T* d_gate, T* d_up, index_t n) {
  using C = compute_t<T>;
  const index_t blocks = (n + kGegluBlock - 1) / kGegluBlock;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t b = 0; b < blocks; ++b) {
    const index_t i0 = b * kGegluBlock, nb = std::min(kGegluBlock, n - i0);
    C x[kGegluBlock], t[kGegluBlock];
    gelu_block(gate + i0, nb, x, t);
    for (index_t j = 0; j < nb; ++j)
      geglu_backward_from(x[j], t[j], up[i0 + j], dy[i0 + j], d_gate ? d_gate + i0 + j : nullptr,
                          d_up ? d_up + i0 + j : nullptr);
  }
}
}  // namespace cpu

template <class T, class... Ds>
struct GegluBackward {
  Tensor<T, Ds...> d_gate, d_up;  // each undefined unless asked for
};

QLORA_DISPATCH_BEGIN

// out = gelu_tanh(gate) · up, one fused pass.
template <class T, class... Ds>
Tensor<T, Ds...> geglu_forward(const Tensor<T, Ds...>& gate, const Tensor<T, Ds...>& up) {
  require_same_shape(gate.shape(), up.shape(), "geglu", "gate and up");
  if (!(gate.device() == up.device())) fail("geglu", "gate on ", gate.device().str(), " but up on ", up.device().str());
  Tensor<T, Ds...> out(gate.shape(), gate.device(), uninitialized);  // every element is written
  if (gate.numel() == 0) return out;
  if (gate.device().is_cpu()) {
    cpu::geglu_forward(gate.data(), up.data(), out.data(), gate.numel());
  } else {
    QLORA_ON_CUDA("geglu", gate.device(),
                  cuda::geglu_forward(gate.data(), up.data(), out.data(), gate.numel(), gate.device()));
  }
  return out;
}

// d_gate and/or d_up for dy, one fused pass.
template <class T, class... Ds>
GegluBackward<T, Ds...> geglu_backward(const Tensor<T, Ds...>& gate, const Tensor<T, Ds...>& up,
                                       const Tensor<T, Ds...>& dy, bool need_gate = true, bool need_up = true) {
  require_same_shape(gate.shape(), dy.shape(), "geglu", "backward: gate and dy");
  GegluBackward<T, Ds...> g;
  if (need_gate) g.d_gate = Tensor<T, Ds...>(gate.shape(), gate.device());
  if (need_up) g.d_up = Tensor<T, Ds...>(gate.shape(), gate.device());
  if (gate.numel() == 0 || !(need_gate || need_up)) return g;
  if (gate.device().is_cpu()) {
    cpu::geglu_backward(gate.data(), up.data(), dy.data(), g.d_gate.data(), g.d_up.data(), gate.numel());
  } else {
    QLORA_ON_CUDA("geglu", gate.device(),
                  cuda::geglu_backward(gate.data(), up.data(), dy.data(), g.d_gate.data(), g.d_up.data(),
                                       gate.numel(), gate.device()));
  }
  return g;
}

// The differentiable GeGLU: gradients reach gate and up.
template <class T, class... Ds>
Variable<T, Ds...> geglu(const Variable<T, Ds...>& gate, const Variable<T, Ds...>& up) {
  auto backward = [gv = gate.value(), uv = up.value(), gn = gate.node(), un = up.node()](const Tensor<T, Ds...>& dy) {
    auto g = geglu_backward(gv, uv, dy, gn != nullptr, un != nullptr);
    if (gn) accumulate_grad(gn, g.d_gate);
    if (un) accumulate_grad(un, g.d_up);
  };
  return make_result("geglu", geglu_forward(gate.value(), up.value()), std::move(backward), gate, up);
}

QLORA_DISPATCH_END
}  // namespace qlora
