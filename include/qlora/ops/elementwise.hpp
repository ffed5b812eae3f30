// Differentiable elementwise ops on Variables of one shape: add, sub, mul, scale, tanh, exp, square.
// Forward and backward are core/expr.hpp expressions, so each is one pass on the CPU or one kernel on CUDA.
//   add:   y = a + b        da = dy            db = dy
//   sub:   y = a - b        da = dy            db = -dy
//   mul:   y = a * b        da = dy * b        db = dy * a
//   scale: y = s * x        dx = s * dy
//   tanh:  y = tanh(x)      dx = dy * (1 - y²)
//   exp:   y = exp(x)       dx = dy * y
//   square:y = x²           dx = 2 x dy
#pragma once

#include "../autograd/variable.hpp"
#include "../core/expr.hpp"

namespace qlora {
QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class... Ds, class E>
Tensor<T, Ds...> evaluate_like(const Tensor<T, Ds...>& like, const E& e) {
  Tensor<T, Ds...> out(like.shape(), like.device(), uninitialized);  // assign writes every element
  assign(out, e);
  return out;
}
template <class T, class... Ds>
void require_same(const Variable<T, Ds...>& a, const Variable<T, Ds...>& b, const char* op) {
  require_same_shape(a.shape(), b.shape(), op, "operands");
}
}  // namespace impl

template <class T, class... Ds>
Variable<T, Ds...> operator+(const Variable<T, Ds...>& a, const Variable<T, Ds...>& b) {
  impl::require_same(a, b, "add");
  auto y = impl::evaluate_like(a.value(), a.value() + b.value());
  return make_result("add", std::move(y), [an = a.node(), bn = b.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(an, dy);
    accumulate_grad(bn, dy);
  }, a, b);
}

template <class T, class... Ds>
Variable<T, Ds...> operator-(const Variable<T, Ds...>& a, const Variable<T, Ds...>& b) {
  impl::require_same(a, b, "sub");
  auto y = impl::evaluate_like(a.value(), a.value() - b.value());
  return make_result("sub", std::move(y), [an = a.node(), bn = b.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(an, dy);
    if (bn) accumulate_grad(bn, impl::evaluate_like(dy, -dy));
  }, a, b);
}

template <class T, class... Ds>
Variable<T, Ds...> operator*(const Variable<T, Ds...>& a, const Variable<T, Ds...>& b) {
  impl::require_same(a, b, "mul");
  auto y = impl::evaluate_like(a.value(), a.value() * b.value());
  return make_result("mul", std::move(y),
                     [av = a.value(), bv = b.value(), an = a.node(), bn = b.node()](const Tensor<T, Ds...>& dy) {
                       if (an) accumulate_grad(an, impl::evaluate_like(dy, dy * bv));
                       if (bn) accumulate_grad(bn, impl::evaluate_like(dy, dy * av));
                     },
                     a, b);
}

template <class T, class... Ds>
Variable<T, Ds...> scale(const Variable<T, Ds...>& x, double s) {
  auto y = impl::evaluate_like(x.value(), x.value() * s);
  return make_result("scale", std::move(y), [xn = x.node(), s](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, impl::evaluate_like(dy, dy * s));
  }, x);
}

template <class T, class... Ds>
Variable<T, Ds...> tanh(const Variable<T, Ds...>& x) {
  auto y = impl::evaluate_like(x.value(), tanh(x.value()));
  return make_result("tanh", y, [y, xn = x.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, impl::evaluate_like(dy, dy * (1.0 - y * y)));
  }, x);
}

template <class T, class... Ds>
Variable<T, Ds...> exp(const Variable<T, Ds...>& x) {
  auto y = impl::evaluate_like(x.value(), exp(x.value()));
  return make_result("exp", y, [y, xn = x.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, impl::evaluate_like(dy, dy * y));
  }, x);
}

template <class T, class... Ds>
Variable<T, Ds...> square(const Variable<T, Ds...>& x) {
  auto y = impl::evaluate_like(x.value(), square(x.value()));
  return make_result("square", std::move(y), [xv = x.value(), xn = x.node()](const Tensor<T, Ds...>& dy) {
    accumulate_grad(xn, impl::evaluate_like(dy, 2.0 * xv * dy));
  }, x);
}

QLORA_DISPATCH_END
}  // namespace qlora
