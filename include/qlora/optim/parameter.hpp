// A trainable parameter seen by optimizers and gradient clipping: a flat fp32 view of a Variable's value and a way
// to reach its current gradient, whatever the Variable's static shape. Optimizers keep their state per Parameter.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../autograd/variable.hpp"

namespace qlora {

class Parameter {
 public:
  template <class... Ds>
  Parameter(std::string name, const Variable<float, Ds...>& v)
      : name_(std::move(name)),
        value_(v.value().template reshape<Dyn>(v.numel())),
        node_(v.node()),
        grad_of_(&grad_of<Ds...>),
        ensure_grad_of_(&ensure_grad_of<Ds...>) {
    if (!node_) fail("optim", "parameter '", name_, "' does not require a gradient");
  }

  const std::string& name() const { return name_; }
  const Tensor<float, Dyn>& value() const { return value_; }
  index_t numel() const { return value_.numel(); }
  Device device() const { return value_.device(); }
  // The gradient as a flat view; undefined when the parameter received none since zero_grad().
  Tensor<float, Dyn> grad() const { return grad_of_(*node_); }
  void zero_grad() const { node_->release_grad(); }
  // The gradient, made zeros first when there is none (a data-parallel rank whose share of a step was empty).
  Tensor<float, Dyn> ensure_grad() const { return ensure_grad_of_(*node_); }

 private:
  template <class... Ds>
  static Tensor<float, Dyn> grad_of(autograd::NodeBase& node) {
    const auto& g = static_cast<autograd::GradNode<float, Ds...>&>(node).grad;
    if (!g.defined()) return {};
    return g.template reshape<Dyn>(g.numel());
  }

  template <class... Ds>
  static Tensor<float, Dyn> ensure_grad_of(autograd::NodeBase& node) {
    auto& n = static_cast<autograd::GradNode<float, Ds...>&>(node);
    if (!n.grad.defined()) n.grad = Tensor<float, Ds...>(n.shape, n.device);
    return n.grad.template reshape<Dyn>(n.grad.numel());
  }

  std::string name_;
  Tensor<float, Dyn> value_;
  std::shared_ptr<autograd::NodeBase> node_;
  Tensor<float, Dyn> (*grad_of_)(autograd::NodeBase&);
  Tensor<float, Dyn> (*ensure_grad_of_)(autograd::NodeBase&);
};

using ParameterList = std::vector<Parameter>;

}  // namespace qlora
