// Differentiable reductions to one value: sum and mean over every element (losses end here).
//   sum:  y = Σ x        dx = dy (broadcast)
//   mean: y = Σ x / n    dx = dy / n
// Forward views x as one row and uses the expression row reduction (cuda/reduce.cuh's block reduction on a GPU);
// it accumulates in the compute type (fp32 for fp32/bf16, fp64 for fp64).
#pragma once

#include "../autograd/variable.hpp"
#include "../core/expr.hpp"

namespace qlora {
QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class... Ds, class Reduction>
Variable<T> reduce_all(const char* op, const Variable<T, Ds...>& x, Reduction reduce, double grad_scale) {
  const auto row = x.value().template reshape<Dyn, Dyn>(index_t{1}, x.numel());
  Tensor<T> y(Shape<>{}, x.device());
  assign(y, reduce(row));
  return make_result(op, std::move(y), [xn = x.node(), grad_scale](const Tensor<T>& dy) {
    Tensor<T, Ds...> dx(xn->shape, xn->device);
    assign(dx, dy * grad_scale);  // dy has one element: it broadcasts over dx
    accumulate_grad(xn, dx);
  }, x);
}
}  // namespace impl

template <class T, class... Ds>
Variable<T> sum(const Variable<T, Ds...>& x) {
  return impl::reduce_all("sum", x, [](const auto& row) { return sum_rows(row); }, 1.0);
}

template <class T, class... Ds>
Variable<T> mean(const Variable<T, Ds...>& x) {
  return impl::reduce_all("mean", x, [](const auto& row) { return mean_rows(row); },
                            1.0 / static_cast<double>(x.numel()));
}

QLORA_DISPATCH_END
}  // namespace qlora
