// linear: y = x · Wᵀ with a frozen weight W [out, in] (bf16, fp32, fp64, or a 4-bit quantized tensor).
// Backward gives dx = dy · W and never a gradient for W: in QLoRA the base weight is frozen and only the adapters
// (ops/lora.hpp) train. A quantized W is dequantized into the compute type for the GEMM in forward and again in
// backward, so no dense copy of it outlives the call (the caching allocator hands the same block back each time).
//
// Any weight type works that provides `frozen_weight<T>(w)`: a dense Tensor<T, Out, In> view or copy of W.
#pragma once

#include "../autograd/variable.hpp"
#include "../core/expr.hpp"
#include "matmul.hpp"

namespace qlora {
QLORA_DISPATCH_BEGIN

// A dense weight in the compute type: the tensor itself when the types match, else a converted copy.
template <class T, class W, class Out, class In>
  requires DenseElement<W>
Tensor<T, Out, In> frozen_weight(const Tensor<W, Out, In>& w) {
  if constexpr (std::is_same_v<T, W>) {
    return w;
  } else {
    Tensor<T, Out, In> out(w.shape(), w.device(), uninitialized);  // assign writes every element
    assign(out, w);
    return out;
  }
}

template <class T, class Rows, class In, class Weight>
auto linear(const Variable<T, Rows, In>& x, const Weight& w) {
  auto y = matmul<Transpose::no, Transpose::yes>(x.value(), frozen_weight<T>(w));
  return make_result("linear", std::move(y), [w, xn = x.node()](const auto& dy) {
    accumulate_grad(xn, matmul(dy, frozen_weight<T>(w)));
  }, x);
}

QLORA_DISPATCH_END
}  // namespace qlora
