// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_: total = ‖(‖g₁‖, ‖g₂‖, …)‖₂ over every
// parameter with a gradient; every gradient is multiplied by min(1, max_norm / (total + 1e-6)). Returns the
// pre-clip total norm (what the HF Trainer logs as grad_norm). A non-finite norm is returned unchanged and nothing is
// scaled, so the caller's NaN guard can name the step.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/expr.hpp"
#include "parameter.hpp"

namespace qlora {
QLORA_DISPATCH_BEGIN

// Gradients on one device (the usual case) have their squared norms written into one buffer there and read back with
// one copy: on a GPU, reading each as it is made would wait for the GPU once per parameter (252 times in a 270M
// step). Gradients spread over devices are read one by one.
inline double clip_grad_norm(const ParameterList& params, double max_norm) {
  std::vector<Tensor<float, Dyn>> grads;
  for (const auto& p : params)
    if (Tensor<float, Dyn> g = p.grad(); g.defined()) grads.push_back(std::move(g));
  auto squared_norm_into = [](const Tensor<float, Dyn>& g, const auto& target) {
    assign(target, sum_rows(square(g.template reshape<Dyn, Dyn>(index_t{1}, g.numel()))));
  };
  const bool one_device = !grads.empty() && std::all_of(grads.begin(), grads.end(), [&](const auto& g) {
    return g.device() == grads.front().device();
  });
  std::vector<float> norms_sq(grads.size());
  if (one_device) {
    Tensor<float, Dyn> buffer(Shape<Dyn>(static_cast<index_t>(grads.size())), grads.front().device());
    for (std::size_t i = 0; i < grads.size(); ++i)
      squared_norm_into(grads[i], buffer.slice(static_cast<index_t>(i), static_cast<index_t>(i) + 1));
    norms_sq = buffer.to_vector();
  } else {
    for (std::size_t i = 0; i < grads.size(); ++i) {
      Tensor<float> norm_sq(Shape<>{}, grads[i].device());
      squared_norm_into(grads[i], norm_sq);
      norms_sq[i] = norm_sq.item();
    }
  }
  double total_sq = 0;
  for (const float sq : norms_sq) {
    const double n = std::sqrt(static_cast<double>(sq));  // torch: per-tensor norms, then their norm
    total_sq += n * n;
  }
  const double total = std::sqrt(total_sq);
  if (!std::isfinite(total) || max_norm <= 0) return total;
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const auto& p : params) {
      const Tensor<float, Dyn> g = p.grad();
      if (g.defined()) assign(g, g * static_cast<float>(coef));
    }
  }
  return total;
}

QLORA_DISPATCH_END
}  // namespace qlora
