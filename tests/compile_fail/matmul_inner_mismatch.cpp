// Must not compile: the inner extents of a matmul are both static and differ (x: [T, 640] times w: [4, 512]ᵀ).
// expect: the inner extents of op\(A\) and op\(B\) differ
#include <qlora/qlora.hpp>

int main() {
  using namespace qlora;
  auto x = Tensor<float, Dyn, Dim<640>>::zeros(2);
#ifdef QLORA_COMPILE_FAIL_CONTROL
  auto w = Tensor<float, Dim<4>, Dim<640>>::zeros();
#else
  auto w = Tensor<float, Dim<4>, Dim<512>>::zeros();
#endif
  auto y = matmul<Transpose::no, Transpose::yes>(x, w);
  return static_cast<int>(y.size(1)) - 4;
}
