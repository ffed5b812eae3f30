// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_: total = ‖(‖g₁‖, ‖g₂‖, …)‖₂ over every
// parameter with a gradient; every gradient is multiplied by min(1, max_norm / (total + 1e-6)). Returns the
// pre-clip total norm (what the HF Trainer logs as grad_norm). A non-finite norm is returned unchanged and nothing is
// scaled, so the caller's NaN guard can name the step.
#pragma once

#include <cmath>

#include "../core/expr.hpp"
#include "parameter.hpp"

namespace qlora {
QLORA_DISPATCH_BEGIN

inline double clip_grad_norm(const ParameterList& params, double max_norm) {
  double total_sq = 0;
  for (const auto& p : params) {
    const Tensor<float, Dyn> g = p.grad();
    if (!g.defined()) continue;
    Tensor<float> norm_sq(Shape<>{}, g.device());
    assign(norm_sq, sum_rows(square(g.template reshape<Dyn, Dyn>(index_t{1}, g.numel()))));
    const double n = std::sqrt(static_cast<double>(norm_sq.item()));  // torch: per-tensor norms, then their norm
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
