// Lazy elementwise expressions with broadcasting and row reductions, evaluated in one pass into their destination.
//
//   y = a * b + c;                 // one loop (CPU) or one kernel (CUDA), no temporary for a * b
//   p = exp(x - max_rows(x));      // row max computed once per row, then the row written
//
// An expression is a small tree of value types (Eigen's idea): leaves point at tensor data, inner nodes hold functors.
// Every operand is viewed as [rows, cols] with cols = the last axis. Shapes broadcast as in NumPy (right-aligned, an
// extent of 1 stretches). Row reductions (sum, mean, max over the last axis) give a [..., 1] result that broadcasts
// back along the row; a reduction must keep the leading extents of its destination. Evaluation binds each leaf to the
// destination's shape (computing strides, checking shapes and devices), then for each row calls prepare_row(r)
// (leaves find their row, reductions reduce) and eval(c) for each column. Arithmetic is done in the compute type
// (float for bf16/f16/float, double for double) and rounded once when stored.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/reduce.cuh"
#include "../cuda/stream.cuh"
#endif

namespace qlora {
#if defined(__CUDACC__)
namespace cuda {
template <class E, class T>
void evaluate_expression(const E& bound, T* out, index_t rows, index_t cols, const Stream& stream);  // elementwise
}
#endif

QLORA_DISPATCH_BEGIN
namespace expr {

inline constexpr int kMaxRank = 6;

// The logical extents of an expression (rank ≤ kMaxRank).
struct Dims {
  int rank = 0;
  index_t e[kMaxRank] = {};
  QLORA_HD index_t last() const { return rank ? e[rank - 1] : 1; }
  QLORA_HD index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank; ++i) n *= e[i];
    return n;
  }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(e[i]);
    return s + "]";
  }
  friend bool operator==(const Dims& a, const Dims& b) {
    return a.rank == b.rank && std::equal(a.e, a.e + a.rank, b.e);
  }
};

template <class... Ds>
Dims dims_of(const Shape<Ds...>& s) {
  static_assert(sizeof...(Ds) <= kMaxRank, "expressions support tensors of rank <= 6");
  Dims d;
  d.rank = sizeof...(Ds);
  for (int i = 0; i < d.rank; ++i) d.e[i] = s[i];
  return d;
}

// NumPy broadcasting of two shapes; throws naming both when they do not broadcast.
inline Dims broadcast(const Dims& a, const Dims& b) {
  Dims out;
  out.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < out.rank; ++i) {
    const index_t x = i < a.rank ? a.e[a.rank - 1 - i] : 1;
    const index_t y = i < b.rank ? b.e[b.rank - 1 - i] : 1;
    if (x != y && x != 1 && y != 1) fail("expr", "shapes do not broadcast: ", a.str(), " and ", b.str());
    out.e[out.rank - 1 - i] = x == 1 ? y : x;
  }
  return out;
}

// Where evaluation happens; every leaf must live there (an equal Device: same memory and, on a GPU, same stream).
struct Target {
  Device device;
};

// Base of every expression node (CRTP), so operators only match expressions.
template <class Derived>
struct Node {
  QLORA_HD const Derived& self() const { return static_cast<const Derived&>(*this); }
};

template <class X>
inline constexpr bool is_node_v = std::is_base_of_v<Node<X>, X>;

// A tensor operand. Broadcast axes get stride 0; the row offset is found once per row.
template <class T>
struct Leaf : Node<Leaf<T>> {
  using value_type = compute_t<T>;
  const T* base = nullptr;
  Dims own;                      // the tensor's extents
  Device device;                 // host side only: checked when bound
  // bound to the destination:
  int out_rank = 0;              // leading axes of the destination (all but the last)
  index_t out_lead[kMaxRank] = {};
  index_t stride[kMaxRank] = {}; // element stride of each leading destination axis in this tensor (0: broadcast)
  index_t col_stride = 1;        // 0 when the last axis broadcasts
  const T* row = nullptr;

  Dims dims() const { return own; }
  void bind(const Dims& out, Target target) {
    if (!(device == target.device))
      fail("expr", "operand of shape ", own.str(), " is on ", device.str(), " but the expression is evaluated on ",
           target.device.str());
    const Dims b = broadcast(own, out);
    if (!(b == out)) fail("expr", "operand ", own.str(), " does not broadcast to the destination ", out.str());
    col_stride = own.rank && own.last() == out.last() ? 1 : 0;
    out_rank = out.rank ? out.rank - 1 : 0;
    index_t s = own.rank ? own.last() : 1;
    for (int i = out_rank - 1; i >= 0; --i) {  // destination axis i ↔ own axis i - (out.rank - own.rank)
      const int k = i - (out.rank - own.rank);
      out_lead[i] = out.e[i];
      stride[i] = (k >= 0 && own.e[k] != 1) ? s : 0;
      if (k >= 0) s *= own.e[k];
    }
  }
  QLORA_HD void prepare_row(index_t r) {
    index_t offset = 0;
    for (int i = out_rank - 1; i >= 0; --i) {
      offset += (r % out_lead[i]) * stride[i];
      r /= out_lead[i];
    }
    row = base + offset;
  }
  QLORA_HD value_type eval(index_t c) const { return convert<value_type>(row[c * col_stride]); }
};

template <class V>
struct Scalar : Node<Scalar<V>> {
  using value_type = V;
  V value;
  explicit Scalar(V v) : value(v) {}
  Dims dims() const { return {}; }
  void bind(const Dims&, Target) {}
  QLORA_HD void prepare_row(index_t) {}
  QLORA_HD V eval(index_t) const { return value; }
};

template <class Op, class E>
struct Unary : Node<Unary<Op, E>> {
  using value_type = typename E::value_type;
  E inner;
  explicit Unary(const E& e) : inner(e) {}
  Dims dims() const { return inner.dims(); }
  void bind(const Dims& out, Target t) { inner.bind(out, t); }
  QLORA_HD void prepare_row(index_t r) { inner.prepare_row(r); }
  QLORA_HD value_type eval(index_t c) const { return Op{}(inner.eval(c)); }
};

template <class Op, class L, class R>
struct Binary : Node<Binary<Op, L, R>> {
  static_assert(std::is_same_v<typename L::value_type, typename R::value_type>,
                "qlora: mixing float and double operands in one expression; convert one side first");
  using value_type = typename L::value_type;
  L lhs;
  R rhs;
  // Operands by reference: a node passed by value is classified by each target's calling convention (on aarch64
  // Scalar<float>, an empty base plus one float, is the case whose passing GCC 10 changed, and GCC says so).
  Binary(const L& l, const R& r) : lhs(l), rhs(r) {}
  Dims dims() const { return broadcast(lhs.dims(), rhs.dims()); }
  void bind(const Dims& out, Target t) {
    lhs.bind(out, t);
    rhs.bind(out, t);
  }
  QLORA_HD void prepare_row(index_t r) {
    lhs.prepare_row(r);
    rhs.prepare_row(r);
  }
  QLORA_HD value_type eval(index_t c) const { return Op{}(lhs.eval(c), rhs.eval(c)); }
};

// Reduces the last axis of `inner`; the result ([..., 1]) is computed in prepare_row and broadcast along the row.
template <class Op, class E>
struct RowReduce : Node<RowReduce<Op, E>> {
  using value_type = typename E::value_type;
  E inner;
  Dims inner_dims;
  value_type result{};
  explicit RowReduce(const E& e) : inner(e), inner_dims(e.dims()) {}
  Dims dims() const {
    Dims d = inner_dims;
    if (d.rank == 0) d.rank = 1;
    d.e[d.rank - 1] = 1;
    return d;
  }
  void bind(const Dims& out, Target t) {
    Dims mine = dims();
    bool same_rows = mine.rank == out.rank;
    for (int i = 0; same_rows && i + 1 < out.rank; ++i) same_rows = mine.e[i] == out.e[i];
    if (!same_rows)
      fail("expr", "a row reduction of ", inner_dims.str(), " must keep the leading extents of the destination ",
           out.str());
    inner.bind(inner_dims, t);
  }
  QLORA_HD void prepare_row(index_t r) {
    inner.prepare_row(r);
    const index_t n = inner_dims.last();
#if defined(__CUDA_ARCH__)
    value_type acc = Op::template identity<value_type>();
    for (index_t c = threadIdx.x; c < n; c += blockDim.x) acc = Op{}(acc, inner.eval(c));
    acc = cuda::block_reduce(acc, Op{}, Op::template identity<value_type>());
#else
    value_type acc = Op::template identity<value_type>();
    for (index_t c = 0; c < n; ++c) acc = Op{}(acc, inner.eval(c));
#endif
    result = Op::finalize(acc, n);
  }
  QLORA_HD value_type eval(index_t) const { return result; }
};

// ---- functors --------------------------------------------------------------------------------------------------
#define QLORA_EXPR_BINARY_OP(Name, body) \
  struct Name {                          \
    template <class V>                   \
    QLORA_HD V operator()(V a, V b) const { return body; } \
  };
QLORA_EXPR_BINARY_OP(AddOp, a + b)
QLORA_EXPR_BINARY_OP(SubOp, a - b)
QLORA_EXPR_BINARY_OP(MulOp, a * b)
QLORA_EXPR_BINARY_OP(DivOp, a / b)
QLORA_EXPR_BINARY_OP(MaxOp, a > b ? a : b)
QLORA_EXPR_BINARY_OP(MinOp, a < b ? a : b)
#undef QLORA_EXPR_BINARY_OP

#define QLORA_EXPR_UNARY_OP(Name, body) \
  struct Name {                         \
    template <class V>                  \
    QLORA_HD V operator()(V x) const { return body; } \
  };
QLORA_EXPR_UNARY_OP(NegOp, -x)
QLORA_EXPR_UNARY_OP(AbsOp, x < V(0) ? -x : x)
QLORA_EXPR_UNARY_OP(SquareOp, x * x)
QLORA_EXPR_UNARY_OP(ExpOp, std::exp(x))
QLORA_EXPR_UNARY_OP(LogOp, std::log(x))
QLORA_EXPR_UNARY_OP(SqrtOp, std::sqrt(x))
QLORA_EXPR_UNARY_OP(RsqrtOp, V(1) / std::sqrt(x))
QLORA_EXPR_UNARY_OP(TanhOp, std::tanh(x))
QLORA_EXPR_UNARY_OP(SigmoidOp, V(1) / (V(1) + std::exp(-x)))
QLORA_EXPR_UNARY_OP(ReluOp, x > V(0) ? x : V(0))
#undef QLORA_EXPR_UNARY_OP

struct SumReduce : AddOp {
  template <class V>
  QLORA_HD static V identity() { return V(0); }
  template <class V>
  QLORA_HD static V finalize(V acc, index_t) { return acc; }
};
struct MeanReduce : AddOp {
  template <class V>
  QLORA_HD static V identity() { return V(0); }
  template <class V>
  QLORA_HD static V finalize(V acc, index_t n) { return acc / V(n); }
};
struct MaxReduce : MaxOp {
  template <class V>
  QLORA_HD static V identity() { return -std::numeric_limits<V>::infinity(); }
  template <class V>
  QLORA_HD static V finalize(V acc, index_t) { return acc; }
};

// ---- turning operands into nodes ---------------------------------------------------------------------------------
template <class T, class... Ds>
Leaf<T> as_node(const Tensor<T, Ds...>& t) {
  if (!t.defined()) fail("expr", "an operand is an undefined tensor");
  Leaf<T> leaf;
  leaf.base = t.data();
  leaf.own = dims_of(t.shape());
  leaf.device = t.device();
  return leaf;
}
template <class E>
  requires is_node_v<E>
const E& as_node(const E& e) {
  return e;
}

template <class X>
concept Operand = is_node_v<X> || is_tensor_v<X>;
template <class X>
using node_t = std::remove_cvref_t<decltype(as_node(std::declval<const X&>()))>;

}  // namespace expr

// ---- the user-facing operators and functions --------------------------------------------------------------------
#define QLORA_EXPR_BINARY_FN(fn, Op)                                                                  \
  template <expr::Operand L, expr::Operand R>                                                         \
  auto fn(const L& l, const R& r) {                                                                   \
    return expr::Binary<expr::Op, expr::node_t<L>, expr::node_t<R>>(expr::as_node(l), expr::as_node(r)); \
  }                                                                                                   \
  template <expr::Operand L, class S>                                                                 \
    requires std::is_arithmetic_v<S>                                                                  \
  auto fn(const L& l, S s) {                                                                          \
    using V = typename expr::node_t<L>::value_type;                                                   \
    return fn(l, expr::Scalar<V>(static_cast<V>(s)));                                                 \
  }                                                                                                   \
  template <class S, expr::Operand R>                                                                 \
    requires std::is_arithmetic_v<S>                                                                  \
  auto fn(S s, const R& r) {                                                                          \
    using V = typename expr::node_t<R>::value_type;                                                   \
    return fn(expr::Scalar<V>(static_cast<V>(s)), r);                                                 \
  }
QLORA_EXPR_BINARY_FN(operator+, AddOp)
QLORA_EXPR_BINARY_FN(operator-, SubOp)
QLORA_EXPR_BINARY_FN(operator*, MulOp)
QLORA_EXPR_BINARY_FN(operator/, DivOp)
QLORA_EXPR_BINARY_FN(maximum, MaxOp)
QLORA_EXPR_BINARY_FN(minimum, MinOp)
#undef QLORA_EXPR_BINARY_FN

#define QLORA_EXPR_UNARY_FN(fn, Op)                                                     \
  template <expr::Operand X>                                                            \
  auto fn(const X& x) {                                                                 \
    return expr::Unary<expr::Op, expr::node_t<X>>(expr::as_node(x));                   \
  }
QLORA_EXPR_UNARY_FN(operator-, NegOp)
QLORA_EXPR_UNARY_FN(abs, AbsOp)
QLORA_EXPR_UNARY_FN(square, SquareOp)
QLORA_EXPR_UNARY_FN(exp, ExpOp)
QLORA_EXPR_UNARY_FN(log, LogOp)
QLORA_EXPR_UNARY_FN(sqrt, SqrtOp)
QLORA_EXPR_UNARY_FN(rsqrt, RsqrtOp)
QLORA_EXPR_UNARY_FN(tanh, TanhOp)
QLORA_EXPR_UNARY_FN(sigmoid, SigmoidOp)
QLORA_EXPR_UNARY_FN(relu, ReluOp)
#undef QLORA_EXPR_UNARY_FN

#define QLORA_EXPR_REDUCE_FN(fn, Op)                                       \
  template <expr::Operand X>                                               \
  auto fn(const X& x) {                                                    \
    return expr::RowReduce<expr::Op, expr::node_t<X>>(expr::as_node(x));   \
  }
QLORA_EXPR_REDUCE_FN(sum_rows, SumReduce)
QLORA_EXPR_REDUCE_FN(mean_rows, MeanReduce)
QLORA_EXPR_REDUCE_FN(max_rows, MaxReduce)
#undef QLORA_EXPR_REDUCE_FN

namespace expr {
template <class E>
struct is_reduction : std::false_type {};
template <class Op, class E>
struct is_reduction<RowReduce<Op, E>> : std::true_type {};

// The destination's extents must equal the expression's; a reduction may also drop its trailing 1.
template <class E, class T, class... Ds>
Dims bind_to_destination(E& e, const Tensor<T, Ds...>& dst) {
  if (!dst.defined()) fail("expr", "assignment into an undefined tensor");
  const Dims want = e.dims();
  const Dims have = dims_of(dst.shape());
  Dims without_last = want;
  without_last.rank = want.rank ? want.rank - 1 : 0;
  const bool reduced_ok = want.rank && want.last() == 1 && have == without_last;
  const bool one_value = want.numel() == 1 && have.numel() == 1;  // e.g. a full reduction into a rank-0 tensor
  if (!(want == have) && !reduced_ok && !one_value) {
    // A pure broadcast into a larger destination (y = scalar, y = bias) is fine too.
    const Dims b = broadcast(want, have);
    if (!(b == have)) fail("expr", "expression of shape ", want.str(), " assigned to a tensor of shape ", have.str());
    e.bind(have, Target{dst.device()});
    return have;
  }
  e.bind(want, Target{dst.device()});
  return want;
}

// One pass over the destination on the CPU: rows in parallel (OpenMP) when there is enough work.
template <class E, class T>
void evaluate_cpu(const E& bound, T* out, index_t rows, index_t cols) {
  [[maybe_unused]] const bool parallel = rows > 1 && rows * cols >= (index_t{1} << 15);
#pragma omp parallel if (parallel)
  {
    E local = bound;
#pragma omp for schedule(static)
    for (index_t r = 0; r < rows; ++r) {
      local.prepare_row(r);
      T* o = out + r * cols;
      for (index_t c = 0; c < cols; ++c) o[c] = convert<T>(local.eval(c));
    }
  }
}
}  // namespace expr

// Evaluates `e` into `dst` in one pass, on dst's device.
template <class T, class... Ds, expr::Operand E>
void assign(const Tensor<T, Ds...>& dst, const E& e) {
  auto node = expr::as_node(e);
  const expr::Dims d = expr::bind_to_destination(node, dst);
  const index_t cols = d.last();
  const index_t rows = cols ? d.numel() / cols : 0;
  if (rows == 0 || cols == 0) return;
  if (dst.device().is_cpu()) {
    expr::evaluate_cpu(node, dst.data(), rows, cols);
  } else {
    QLORA_ON_CUDA("expr", dst.device(), cuda::evaluate_expression(node, dst.data(), rows, cols, dst.device()));
  }
}

// A new tensor of type Tensor<T, Ds...> holding the value of `e` (on the device of `device`).
template <class T, class... Ds, expr::Operand E>
Tensor<T, Ds...> evaluate(const E& e, Device device = Device::cpu()) {
  auto node = expr::as_node(e);
  const expr::Dims d = node.dims();
  std::array<index_t, sizeof...(Ds)> ext{};
  if (d.rank == static_cast<int>(sizeof...(Ds))) {
    for (int i = 0; i < d.rank; ++i) ext[i] = d.e[i];
  } else if (d.rank == static_cast<int>(sizeof...(Ds)) + 1 && d.last() == 1) {
    for (int i = 0; i + 1 < d.rank; ++i) ext[i] = d.e[i];
  } else {
    fail("expr", "evaluate: expression of shape ", d.str(), " does not fit a tensor of rank ", sizeof...(Ds));
  }
  Tensor<T, Ds...> out(typename Tensor<T, Ds...>::shape_type(ext), device, uninitialized);  // assign writes it all
  assign(out, e);
  return out;
}

QLORA_DISPATCH_END

template <class T, class... Ds>
template <class E>
Tensor<T, Ds...>& Tensor<T, Ds...>::operator=(const E& expression) requires(!is_tensor_v<E>) {
  assign(*this, expression);
  return *this;
}

}  // namespace qlora

#if defined(__CUDACC__)
#include "../cuda/elementwise.cuh"
#endif
