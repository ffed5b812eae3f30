// reshape: the same elements under another shape, as a differentiable view (no copy). Backward reshapes the
// gradient back. Used to move between [tokens, heads · head_dim] and [tokens, heads, head_dim].
#pragma once

#include "../autograd/variable.hpp"

namespace qlora {

template <class... Es, class T, class... Ds, class... Ns>
Variable<T, Es...> reshape(const Variable<T, Ds...>& x, Ns... extents) {
  auto y = x.value().template reshape<Es...>(extents...);
  const Shape<Ds...> in_shape = x.shape();
  return make_result("reshape", std::move(y), [in_shape, xn = x.node()](const Tensor<T, Es...>& dy) {
    accumulate_grad(xn, Tensor<T, Ds...>(dy.storage(), dy.offset(), in_shape));
  }, x);
}

}  // namespace qlora
