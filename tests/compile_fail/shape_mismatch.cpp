// Must not compile: adding tensors whose static extents differ is caught by the type system.
// expect: static extents differ
#include <qlora/qlora.hpp>

int main() {
  using namespace qlora;
  auto a = Variable<float, Dim<2>, Dim<3>>::leaf(Tensor<float, Dim<2>, Dim<3>>::zeros());
#ifdef QLORA_COMPILE_FAIL_CONTROL
  auto b = Variable<float, Dim<2>, Dim<3>>::leaf(Tensor<float, Dim<2>, Dim<3>>::zeros());
  require_same_shape(a.shape(), b.shape(), "test", "control");
#else
  auto b = Variable<float, Dim<2>, Dim<4>>::leaf(Tensor<float, Dim<2>, Dim<4>>::zeros());
  require_same_shape(a.shape(), b.shape(), "test", "mismatch");
#endif
  return 0;
}
