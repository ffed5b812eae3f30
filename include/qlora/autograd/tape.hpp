// Running the recorded graph backwards, switching recording off, and trading compute for memory.
//
// backward(loss) orders the nodes reachable from `loss` so every node runs after all its consumers (a tape read in
// reverse), runs each backward closure once, and frees interior nodes as it goes; leaves keep (and accumulate)
// their gradients. checkpoint(fn, inputs...) runs fn without recording, keeps only its inputs, and re-runs fn with
// recording during backward: activations inside fn never live through the forward pass.
#pragma once

#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "variable.hpp"

namespace qlora {

// Turns recording off in a scope: NoGrad guard; ... (like torch.no_grad()).
class NoGrad {
 public:
  NoGrad() : previous_(grad_mode_flag()) { grad_mode_flag() = false; }
  ~NoGrad() { grad_mode_flag() = previous_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Turns recording back on inside a NoGrad scope (used by checkpoint's recomputation).
class EnableGrad {
 public:
  EnableGrad() : previous_(grad_mode_flag()) { grad_mode_flag() = true; }
  ~EnableGrad() { grad_mode_flag() = previous_; }
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool previous_;
};

namespace autograd {
// Post-order of the graph below `root` (inputs before the nodes that use them), without recursion.
inline std::vector<NodeBase*> topological_order(NodeBase* root) {
  std::vector<NodeBase*> order;
  std::unordered_set<NodeBase*> seen{root};
  std::vector<std::pair<NodeBase*, std::size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      NodeBase* child = node->inputs[next++].get();
      if (seen.insert(child).second) stack.emplace_back(child, 0);
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  return order;
}
}  // namespace autograd

// Back-propagates `d_root` (same shape as root) from `root` into every leaf below it.
template <class T, class... Ds>
void backward(const Variable<T, Ds...>& root, const Tensor<T, Ds...>& d_root) {
  if (!root.requires_grad()) fail("autograd", "backward() of a value that does not require a gradient");
  const std::vector<autograd::NodeBase*> order = autograd::topological_order(root.node().get());
  root.node()->accumulate(d_root);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    (*it)->run_backward();
    if (!(*it)->is_leaf()) (*it)->release();
  }
}

// Back-propagates from a loss, seeding its gradient with ones (usually a one-element loss).
template <class T, class... Ds>
void backward(const Variable<T, Ds...>& loss) {
  Tensor<T, Ds...> seed(loss.shape());
  std::fill_n(seed.data(), seed.numel(), convert<T>(1.0f));
  backward(loss, seed.on(loss.device()));
}

// out = fn(inputs...) without keeping fn's activations; they are recomputed in backward.
// Gradients flow to `inputs` and to leaf variables that fn captures (its parameters). fn must be deterministic
// (dropout: seed it from the inputs or a counter, not a global RNG) and must not capture non-leaf variables.
template <class Fn, class... Vs>
auto checkpoint(Fn fn, const Vs&... inputs) {
  using Out = decltype(fn(inputs.detach()...));
  typename Out::tensor_type value;
  {
    NoGrad no_grad;
    value = fn(inputs.detach()...).value();
  }
  auto recompute = [fn, inputs...](const typename Out::tensor_type& d_out) {
    EnableGrad enable;
    auto fresh = std::make_tuple(Vs::leaf(inputs.value(), inputs.requires_grad())...);
    const Out out = std::apply(fn, fresh);
    if (out.requires_grad()) backward(out, d_out);
    auto send = [](const auto& original, const auto& recomputed) {
      if (recomputed.has_grad()) accumulate_grad(original.node(), recomputed.grad());
    };
    std::apply([&](const auto&... leaves) { (send(inputs, leaves), ...); }, fresh);
  };
  // Recorded even when no input needs a gradient: fn's captured parameters may.
  if (!grad_enabled()) return Out(std::move(value));
  auto node = std::make_shared<typename Out::node_type>("checkpoint", value.shape(), value.device());
  ((inputs.requires_grad() ? node->inputs.push_back(inputs.node()) : void()), ...);
  node->backward = std::move(recompute);
  return Out(std::move(value), std::move(node));
}

}  // namespace qlora
