// RMSNorm, Gemma flavours: normalise each row by its root mean square, then scale it, with the whole computation in
// fp32 (fp64 when T is double) and one rounding to the activation dtype:
//
//   rstd[r] = 1 / sqrt(mean_c x[r,c]² + eps)        y[r,c] = (x[r,c] · rstd[r]) · s[c]
//
// The scale s depends on how the checkpoint stores the norm's weight w (NormWeight): Gemma 3 (Gemma3RMSNorm) stores
// w initialised to 0 and scales by s = 1 + w; Gemma 4 (Gemma4RMSNorm) stores the scale itself, s = w. Gemma 4's
// weight-free norms (v_norm, the router's norm: with_scale=False) have s = 1: rmsnorm_unscaled.
//
// x: [..., C] (any leading extents: [tokens, hidden], or [tokens, heads, head_dim] for the per-head q/k norms with
// w shared over heads), w: [C]. Forward saves rstd (one value per row, compute type) for backward. With
// x̂ = x · rstd and g = dy · s:
//   dx[r,c] = rstd[r] · (g[r,c] − x̂[r,c] · mean_c(g[r,·] · x̂[r,·]))        dw[c] = Σ_r dy[r,c] · x̂[r,c]
// (ds/dw = 1 in both conventions). dw is optional (Gemma's norm weights are frozen under QLoRA). CUDA:
// cuda/rmsnorm.cuh.
#pragma once

#include <algorithm>
#include <cmath>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/rmsnorm.cuh"
#endif

namespace qlora {

// How an RMSNorm's stored weight w scales the normalised row: by 1 + w (Gemma 3) or by w itself (Gemma 4).
enum class NormWeight { one_plus_w, w };

// The constant added to w for the scale: 1 for Gemma 3's 1 + w, 0 for Gemma 4's w.
constexpr double norm_weight_offset(NormWeight k) { return k == NormWeight::one_plus_w ? 1.0 : 0.0; }

namespace cpu {
// y, rstd from x: [rows, cols] and the scale offset + w[c] (w: [cols]; null: scale 1).
template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, compute_t<T>* rstd, index_t rows, index_t cols, double eps,
                     double offset = 1) {
  using C = compute_t<T>;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    C lanes[8] = {};  // eight partial sums: better rounding than one running sum, and they vectorise
    for (index_t c = 0; c < cols; ++c) {
      const C v = convert<C>(xr[c]);
      lanes[c % 8] += v * v;
    }
    const C ss = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    const C s = C(1) / std::sqrt(ss / static_cast<C>(cols) + static_cast<C>(eps));
    rstd[r] = s;
    const C o = static_cast<C>(offset);
    for (index_t c = 0; c < cols; ++c)
      y[r * cols + c] = convert<T>(convert<C>(xr[c]) * s * (w ? o + convert<C>(w[c]) : C(1)));
  }
}

// dx (when non-null) and dw (when non-null) from dy, x: [rows, cols], w: [cols] (null: scale 1), rstd: [rows].
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* rstd, T* dx, T* dw, index_t rows,
                      index_t cols, double offset = 1) {
  using C = compute_t<T>;
  const C o = static_cast<C>(offset);
  if (dx) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
    for (index_t r = 0; r < rows; ++r) {
      const T *dyr = dy + r * cols, *xr = x + r * cols;
      const C s = rstd[r];
      C dot = 0;  // Σ_c g · x̂
      for (index_t c = 0; c < cols; ++c)
        dot += convert<C>(dyr[c]) * (w ? o + convert<C>(w[c]) : C(1)) * (convert<C>(xr[c]) * s);
      const C m = dot / static_cast<C>(cols);
      for (index_t c = 0; c < cols; ++c) {
        const C g = convert<C>(dyr[c]) * (w ? o + convert<C>(w[c]) : C(1));
        dx[r * cols + c] = convert<T>(s * (g - convert<C>(xr[c]) * s * m));
      }
    }
  }
  if (dw) {
    constexpr index_t block = 64;  // columns per task: each row contributes one contiguous 64-wide strip
    const index_t blocks = (cols + block - 1) / block;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
    for (index_t b = 0; b < blocks; ++b) {
      const index_t c0 = b * block, c1 = std::min(cols, c0 + block);
      C acc[block] = {};
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = c0; c < c1; ++c)
          acc[c - c0] += convert<C>(dy[r * cols + c]) * convert<C>(x[r * cols + c]) * rstd[r];
      for (index_t c = c0; c < c1; ++c) dw[c] = convert<T>(acc[c - c0]);
    }
  }
}
}  // namespace cpu

namespace detail {
template <class... Ds>
using rmsnorm_last_extent_t = extent_at_t<sizeof...(Ds) - 1, Ds...>;
}

// What rmsnorm forward gives and saves: y like x, rstd: [rows] in the compute type.
template <class T, class... Ds>
struct RmsNormForward {
  Tensor<T, Ds...> y;
  Tensor<compute_t<T>, Dyn> rstd;
};
template <class T, class... Ds>
struct RmsNormBackward {
  Tensor<T, Ds...> dx;   // undefined unless asked for
  Tensor<T, Dyn> dw;     // [C], undefined unless asked for
};

QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class... Ds, class Dc>
index_t rmsnorm_check(const Tensor<T, Ds...>& x, const Tensor<T, Dc>& w) {
  static_assert(sizeof...(Ds) >= 1, "rmsnorm: x needs at least one axis");
  static_assert(extents_compatible_v<detail::rmsnorm_last_extent_t<Ds...>, Dc>,
                "rmsnorm: the weight's extent differs from x's last extent");
  const index_t cols = x.size(sizeof...(Ds) - 1);
  if (w.size(0) != cols)
    fail("rmsnorm", "weight ", w.shape().str(), " does not match the last extent of x ", x.shape().str());
  if (!(x.device() == w.device())) fail("rmsnorm", "x on ", x.device().str(), " but weight on ", w.device().str());
  return cols;
}

// Forward with the scale offset + w[c] (w null: scale 1).
template <class T, class... Ds>
RmsNormForward<T, Ds...> rmsnorm_forward_run(const Tensor<T, Ds...>& x, const T* w, double eps, double offset) {
  static_assert(sizeof...(Ds) >= 1, "rmsnorm: x needs at least one axis");
  const index_t cols = x.size(sizeof...(Ds) - 1);
  const index_t rows = cols ? x.numel() / cols : 0;
  RmsNormForward<T, Ds...> out{Tensor<T, Ds...>(x.shape(), x.device()),
                               Tensor<compute_t<T>, Dyn>(Shape<Dyn>(rows), x.device())};
  if (rows == 0 || cols == 0) return out;
  if (x.device().is_cpu()) {
    cpu::rmsnorm_forward(x.data(), w, out.y.data(), out.rstd.data(), rows, cols, eps, offset);
  } else {
    QLORA_ON_CUDA("rmsnorm", x.device(),
                  cuda::rmsnorm_forward(x.data(), w, out.y.data(), out.rstd.data(), rows, cols, eps, offset,
                                        x.device()));
  }
  return out;
}

template <class T, class... Ds>
RmsNormBackward<T, Ds...> rmsnorm_backward_run(const Tensor<T, Ds...>& dy, const Tensor<T, Ds...>& x, const T* w,
                                               const Tensor<compute_t<T>, Dyn>& rstd, bool need_dx, bool need_dw,
                                               double offset) {
  const index_t cols = x.size(sizeof...(Ds) - 1);
  const index_t rows = cols ? x.numel() / cols : 0;
  require_same_shape(dy.shape(), x.shape(), "rmsnorm", "backward: dy and x");
  require(rstd.size(0) == rows, "rmsnorm", "backward: rstd has ", rstd.size(0), " rows, x has ", rows);
  RmsNormBackward<T, Ds...> g;
  if (need_dx) g.dx = Tensor<T, Ds...>(x.shape(), x.device());
  if (need_dw) g.dw = Tensor<T, Dyn>(Shape<Dyn>(cols), x.device());
  if (rows == 0 || cols == 0 || !(need_dx || need_dw)) return g;
  if (x.device().is_cpu()) {
    cpu::rmsnorm_backward(dy.data(), x.data(), w, rstd.data(), g.dx.data(), g.dw.data(), rows, cols, offset);
  } else {
    QLORA_ON_CUDA("rmsnorm", x.device(),
                  cuda::rmsnorm_backward(dy.data(), x.data(), w, rstd.data(), g.dx.data(), g.dw.data(), rows, cols,
                                         offset, x.device()));
  }
  return g;
}
}  // namespace impl

// y = x · rstd · s over the last axis of x (s = 1 + w, or w for NormWeight::w), and the saved rstd.
template <class T, class... Ds, class Dc>
RmsNormForward<T, Ds...> rmsnorm_forward(const Tensor<T, Ds...>& x, const Tensor<T, Dc>& w, double eps = 1e-6,
                                         NormWeight kind = NormWeight::one_plus_w) {
  (void)impl::rmsnorm_check(x, w);
  return impl::rmsnorm_forward_run(x, w.data(), eps, norm_weight_offset(kind));
}

// dx and/or dw for dy (shaped like x), given forward's x, w and rstd.
template <class T, class... Ds, class Dc>
RmsNormBackward<T, Ds...> rmsnorm_backward(const Tensor<T, Ds...>& dy, const Tensor<T, Ds...>& x,
                                           const Tensor<T, Dc>& w, const Tensor<compute_t<T>, Dyn>& rstd,
                                           bool need_dx = true, bool need_dw = true,
                                           NormWeight kind = NormWeight::one_plus_w) {
  (void)impl::rmsnorm_check(x, w);
  return impl::rmsnorm_backward_run(dy, x, w.data(), rstd, need_dx, need_dw, norm_weight_offset(kind));
}

// The differentiable Gemma RMSNorm: gradients reach x and, when it requires one, w.
template <class T, class... Ds, class Dc>
Variable<T, Ds...> rmsnorm(const Variable<T, Ds...>& x, const Variable<T, Dc>& w, double eps = 1e-6,
                           NormWeight kind = NormWeight::one_plus_w) {
  auto fwd = rmsnorm_forward(x.value(), w.value(), eps, kind);
  auto backward = [x_val = x.value(), w_val = w.value(), rstd = fwd.rstd, xn = x.node(), wn = w.node(),
                   kind](const Tensor<T, Ds...>& dy) {
    auto g = rmsnorm_backward(dy, x_val, w_val, rstd, xn != nullptr, wn != nullptr, kind);
    if (xn) accumulate_grad(xn, g.dx);
    if (wn) accumulate_grad(wn, g.dw);
  };
  return make_result("rmsnorm", std::move(fwd.y), std::move(backward), x, w);
}

// The weight-free norm y = x · rstd (Gemma4RMSNorm with with_scale=False: v_norm, the router's norm).
template <class T, class... Ds>
RmsNormForward<T, Ds...> rmsnorm_unscaled_forward(const Tensor<T, Ds...>& x, double eps = 1e-6) {
  return impl::rmsnorm_forward_run(x, static_cast<const T*>(nullptr), eps, 0.0);
}
template <class T, class... Ds>
Tensor<T, Ds...> rmsnorm_unscaled_backward(const Tensor<T, Ds...>& dy, const Tensor<T, Ds...>& x,
                                           const Tensor<compute_t<T>, Dyn>& rstd) {
  return impl::rmsnorm_backward_run(dy, x, static_cast<const T*>(nullptr), rstd, true, false, 0.0).dx;
}
template <class T, class... Ds>
Variable<T, Ds...> rmsnorm_unscaled(const Variable<T, Ds...>& x, double eps = 1e-6) {
  auto fwd = rmsnorm_unscaled_forward(x.value(), eps);
  auto backward = [x_val = x.value(), rstd = fwd.rstd, xn = x.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, rmsnorm_unscaled_backward(dy, x_val, rstd));
  };
  return make_result("rmsnorm_unscaled", std::move(fwd.y), std::move(backward), x);
}

QLORA_DISPATCH_END
}  // namespace qlora
