// Builds against the installed headers and runs a tiny fused expression and matmul with a gradient.
#include <qlora/gemma.hpp>  // the whole library: it must compile from the installed headers

#include <cmath>
#include <iostream>

namespace consumer {
float kept_fraction();  // umbrella.cpp
}

int main() {
  using namespace qlora;
  auto a = Tensor<float, Dim<2>, Dim<3>>::full(2.0f);
  auto b = Tensor<float, Dim<3>, Dim<2>>::full(0.5f);
  auto x = Variable<float, Dim<2>, Dim<3>>::leaf(a);
  auto w = Variable<float, Dim<3>, Dim<2>>::leaf(b);
  auto loss = sum(matmul(x, w));
  backward(loss);
  const float value = loss.value().item();  // 4 outputs of 3 * (2 * 0.5) = 12
  const float kept = consumer::kept_fraction();
  std::cout << "consumer: loss " << value << ", d_x(0,0) " << x.grad()(0, 0) << ", dropout kept " << kept << "\n";
  return (std::abs(value - 12.0f) < 1e-6f && std::abs(x.grad()(0, 0) - 1.0f) < 1e-6f && kept > 0.5f) ? 0 : 1;
}
