// Variable<T, Dims...>: a Tensor value plus, when it needs a gradient, the graph node that will receive it.
//
// Leaves (parameters, inputs) are made with Variable::leaf(tensor); ops make results with `make_result`, which
// records a GradNode holding the op's backward closure and the nodes of the inputs that need gradients. Gradients of
// leaves accumulate across backward() calls until zero_grad(). Nothing is recorded under NoGrad (autograd/tape.hpp)
// or when no input needs a gradient.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.hpp"

namespace qlora {

// Whether ops record backward nodes on this thread (see NoGrad).
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
inline bool grad_enabled() { return grad_mode_flag(); }

namespace autograd {

struct NodeBase {
  explicit NodeBase(std::string op) : op_name(std::move(op)) {}
  virtual ~NodeBase() = default;
  virtual bool is_leaf() const = 0;
  // Sends this node's gradient to its inputs; a node runs once per backward pass.
  virtual void run_backward() = 0;
  // Frees the closure (and the tensors it saved) and the gradient of an interior node after use.
  virtual void release() = 0;
  // Forgets the accumulated gradient (zero_grad).
  virtual void release_grad() = 0;

  std::string op_name;                            // for error messages: "matmul", "leaf", ...
  std::vector<std::shared_ptr<NodeBase>> inputs;  // nodes this one sends gradients to
};

template <class T, class... Ds>
struct GradNode final : NodeBase {
  using tensor_type = Tensor<T, Ds...>;
  using backward_type = std::function<void(const tensor_type& d_out)>;

  GradNode(std::string op, const Shape<Ds...>& s, Device d) : NodeBase(std::move(op)), shape(s), device(d) {}

  bool is_leaf() const override { return leaf; }
  void run_backward() override {
    if (released) fail("autograd", "backward through '", op_name, "' a second time: its saved tensors were freed");
    if (backward && grad.defined()) backward(grad);
  }
  void release_grad() override { grad = tensor_type(); }
  void release() override {
    backward = nullptr;
    grad = tensor_type();
    released = true;
  }

  // grad += g (the first gradient is adopted when nothing else holds it, else copied).
  void accumulate(const tensor_type& g) {
    if (!(g.shape() == shape))
      fail("autograd", "gradient of shape ", g.shape().str(), " for '", op_name, "' of shape ", shape.str());
    if (!grad.defined()) {
      grad = (g.storage().use_count() == 1 && g.device() == device) ? g : g.to(device);
      return;
    }
    // a gradient made on another device (the CPU, another stream) is copied over first, ordered with both streams
    const tensor_type here = g.device() == device ? g : g.to(device);
    device.allocator().accumulate(dtype_traits<T>::id, grad.data(), here.data(), static_cast<std::size_t>(g.numel()));
  }

  Shape<Ds...> shape;
  Device device;
  tensor_type grad;
  backward_type backward;
  bool leaf = false;
  bool released = false;
};

}  // namespace autograd

template <class T, class... Ds>
class Variable {
 public:
  using tensor_type = Tensor<T, Ds...>;
  using node_type = autograd::GradNode<T, Ds...>;
  static constexpr int rank = sizeof...(Ds);

  Variable() = default;
  // A constant: takes part in ops, never receives a gradient.
  explicit Variable(tensor_type value) : value_(std::move(value)) {}
  Variable(tensor_type value, std::shared_ptr<node_type> node) : value_(std::move(value)), node_(std::move(node)) {}

  // A leaf of the graph (a parameter or an input) that collects its gradient.
  static Variable leaf(tensor_type value, bool requires_grad = true) {
    if (!requires_grad) return Variable(std::move(value));
    auto node = std::make_shared<node_type>("leaf", value.shape(), value.device());
    node->leaf = true;
    return Variable(std::move(value), std::move(node));
  }

  const tensor_type& value() const { return value_; }
  const Shape<Ds...>& shape() const { return value_.shape(); }
  index_t size(int axis) const { return value_.size(axis); }
  index_t numel() const { return value_.numel(); }
  Device device() const { return value_.device(); }

  bool requires_grad() const { return node_ != nullptr; }
  bool has_grad() const { return node_ && node_->grad.defined(); }
  const tensor_type& grad() const {
    if (!has_grad()) fail("autograd", "grad() of a variable ", shape().str(), " that has received no gradient");
    return node_->grad;
  }
  void zero_grad() const {
    if (node_) node_->release_grad();
  }
  const std::shared_ptr<node_type>& node() const { return node_; }
  // The same value, cut from the graph.
  Variable detach() const { return Variable(value_); }

 private:
  tensor_type value_;
  std::shared_ptr<node_type> node_;
};

template <class X>
inline constexpr bool is_variable_v = false;
template <class T, class... Ds>
inline constexpr bool is_variable_v<Variable<T, Ds...>> = true;

// The result of an op: records `backward` (a callable taking d_out) when grad mode is on and an input needs it.
template <class T, class... Ds, class Backward, class... Inputs>
Variable<T, Ds...> make_result(const char* op, Tensor<T, Ds...> value, Backward&& backward, const Inputs&... inputs) {
  if (!grad_enabled() || !(inputs.requires_grad() || ...)) return Variable<T, Ds...>(std::move(value));
  auto node = std::make_shared<autograd::GradNode<T, Ds...>>(op, value.shape(), value.device());
  (
      [&] {
        if (inputs.requires_grad()) node->inputs.push_back(inputs.node());
      }(),
      ...);
  node->backward = std::forward<Backward>(backward);
  return Variable<T, Ds...>(std::move(value), std::move(node));
}

// Adds `g` to the gradient of the variable behind `node` (no-op for constants).
template <class T, class... Ds, class... Es>
void accumulate_grad(const std::shared_ptr<autograd::GradNode<T, Ds...>>& node, const Tensor<T, Es...>& g) {
  if (node) node->accumulate(Tensor<T, Ds...>(g.storage(), g.offset(), Shape<Ds...>(g.shape().extents())));
}

}  // namespace qlora
