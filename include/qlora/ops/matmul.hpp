// matmul: C = op(A) · op(B) with op = identity or transpose, plain (2-D) or batched (3-D), forward and backward.
//
//   auto y = matmul<Transpose::no, Transpose::yes>(x, w);   // x: [T, in], w: [out, in]  ->  y: [T, out]
//
// The inner extents must agree: statically (compile error) where both are static, else at run time. CPU: Eigen's
// GEMM on row-major maps (fp32 and fp64; bf16/f16 are widened to fp32). CUDA: cuBLAS with fp32 accumulation
// (cuda/matmul.cuh). Backward, for dC = ∂L/∂C:
//   A not transposed: dA = dC · op(B)ᵀ        A transposed: dA = op(B) · dCᵀ
//   B not transposed: dB = op(A)ᵀ · dC        B transposed: dB = dCᵀ · op(A)
#pragma once

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"

#if defined(__CUDACC__)
#include "../cuda/matmul.cuh"
#endif

namespace qlora {

enum class Transpose { no, yes };

// One (batched) GEMM on row-major operands: C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b].
struct GemmParams {
  index_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  index_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries (0: shared operand)
  double alpha = 1, beta = 0;
};

namespace cpu {
namespace detail {
template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
void gemm_native(const GemmParams& p, const T* a, const T* b, T* c) {
  using Map = Eigen::Map<const RowMajor<T>>;
  for (index_t i = 0; i < p.batch; ++i) {
    Map A(a + i * p.stride_a, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k);
    Map B(b + i * p.stride_b, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n);
    Eigen::Map<RowMajor<T>> C(c + i * p.stride_c, p.m, p.n);
    const T alpha = static_cast<T>(p.alpha);
    if (p.beta == 0) C.setZero(); else if (p.beta != 1) C *= static_cast<T>(p.beta);
    if (!p.trans_a && !p.trans_b) C.noalias() += alpha * A * B;
    else if (!p.trans_a && p.trans_b) C.noalias() += alpha * A * B.transpose();
    else if (p.trans_a && !p.trans_b) C.noalias() += alpha * A.transpose() * B;
    else C.noalias() += alpha * A.transpose() * B.transpose();
  }
}
}  // namespace detail

#if QLORA_COMPILED_KERNELS
// Programs that link qlora::models take Eigen's GEMM kernels compiled once there (models/kernels.cpp) instead of
// optimising them again in every translation unit; header-only users instantiate them as usual.
extern template void detail::gemm_native<float>(const GemmParams&, const float*, const float*, float*);
extern template void detail::gemm_native<double>(const GemmParams&, const double*, const double*, double*);
#endif

#if QLORA_HAVE_ONEDNN
// The oneDNN backend (defined in ops/matmul_onednn.hpp, included at the end of this header or, in programs that link
// qlora::kernels, compiled once in models/kernels.cpp).
template <class T>
struct OneDnnGemm {
  static_assert(std::is_same_v<T, float>, "the oneDNN backend multiplies fp32 tensors");
  // C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] in fp32, or with bf16 operands (math = onednn_bf16).
  static void gemm(const GemmParams& p, CpuGemm math, const T* a, const T* b, T* c);
  // Whether oneDNN finds bf16 units on this CPU (AVX512-BF16 or AMX, within ONEDNN_MAX_CPU_ISA).
  static bool cpu_has_bf16_units();
  // "oneDNN 2.6.3 fp32 on AVX2 (kernel gemm:jit)": the library, the ISA it runs and its kernel for a 270M-sized
  // projection in this math.
  static std::string describe(CpuGemm math);
};
#if QLORA_COMPILED_KERNELS
extern template struct OneDnnGemm<float>;
#endif
#endif

// GEMMs and multiply-adds (m·n·k per batch entry) run by each CPU backend since the program started: what the
// benchmarks and the finetune summary report as "which kernel ran".
struct CpuGemmCount {
  std::atomic<std::uint64_t> calls{0}, macs{0};
};
inline CpuGemmCount& cpu_gemm_count(CpuGemm backend) {
  static CpuGemmCount counts[std::size(all_cpu_gemms)];
  return counts[static_cast<int>(backend)];
}

// The CPU GEMMs. `backend`: Eigen (the reference) or oneDNN where this build has it (fp32 operands; other types and
// builds without oneDNN take Eigen). 16-bit operands are widened to fp32, multiplied, and rounded once into C.
template <class T>
void gemm(const GemmParams& p, const T* a, const T* b, T* c, CpuGemm backend = CpuGemm::eigen) {
  // oneDNN takes fp32 products with an inner extent; k = 0 (C = beta·C) and other types go to Eigen.
#if QLORA_HAVE_ONEDNN
  const bool onednn = std::is_same_v<T, float> && backend != CpuGemm::eigen && p.k > 0;
#else
  const bool onednn = false;
#endif
  CpuGemmCount& n = cpu_gemm_count(onednn ? backend : CpuGemm::eigen);
  n.calls.fetch_add(1, std::memory_order_relaxed);
  n.macs.fetch_add(static_cast<std::uint64_t>(p.batch * p.m * p.n * p.k), std::memory_order_relaxed);
#if QLORA_HAVE_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (onednn) return OneDnnGemm<float>::gemm(p, backend, a, b, c);
  }
#endif
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    detail::gemm_native(p, a, b, c);
  } else {
    auto widen = [](const T* x, index_t n) {
      std::vector<float> out(static_cast<std::size_t>(n));
      for (index_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = convert<float>(x[i]);
      return out;
    };
    const index_t na = (p.stride_a ? p.stride_a * (p.batch - 1) : 0) + p.m * p.k;
    const index_t nb = (p.stride_b ? p.stride_b * (p.batch - 1) : 0) + p.k * p.n;
    const index_t nc = p.stride_c * (p.batch - 1) + p.m * p.n;
    const std::vector<float> fa = widen(a, na), fb = widen(b, nb);
    std::vector<float> fc = p.beta != 0 ? widen(c, nc) : std::vector<float>(static_cast<std::size_t>(nc));
    detail::gemm_native(p, fa.data(), fb.data(), fc.data());
    for (index_t i = 0; i < nc; ++i) c[i] = convert<T>(fc[static_cast<std::size_t>(i)]);
  }
}
}  // namespace cpu

namespace detail {
template <Transpose t, class D0, class D1>
using op_rows_t = std::conditional_t<t == Transpose::no, D0, D1>;
template <Transpose t, class D0, class D1>
using op_cols_t = std::conditional_t<t == Transpose::no, D1, D0>;
constexpr Transpose flip(Transpose t) { return t == Transpose::no ? Transpose::yes : Transpose::no; }

template <Transpose TA, Transpose TB, class A0, class A1, class B0, class B1>
constexpr void check_matmul_types() {
  static_assert(extents_compatible_v<op_cols_t<TA, A0, A1>, op_rows_t<TB, B0, B1>>,
                "qlora matmul: the inner extents of op(A) and op(B) differ");
}
}  // namespace detail

QLORA_DISPATCH_BEGIN

// Runs the GEMM on the operands' device: on the CPU with the device's GEMM backend, on a GPU with cuBLAS on the
// device's stream.
template <class T>
void gemm(const GemmParams& p, const Device& device, const T* a, const T* b, T* c) {
  if (device.is_cpu()) return cpu::gemm(p, a, b, c, device.cpu_gemm());
  QLORA_ON_CUDA("matmul", device, cuda::gemm(p, a, b, c, device));
}

namespace impl {
// A product's C: written whole by the GEMM (beta = 0), so not zero-filled first — unless there is no inner extent
// (k = 0), where C = 0 is the whole product.
template <class Out>
Out gemm_result(const typename Out::shape_type& shape, index_t k, const Device& device) {
  return k > 0 ? Out(shape, device, uninitialized) : Out(shape, device);
}

inline void check_matmul_runtime(index_t inner_a, index_t inner_b, const std::string& a, const std::string& b,
                                 const Device& da, const Device& db) {
  if (inner_a != inner_b) fail("matmul", "inner extents differ: op(A) of ", a, " has ", inner_a, ", op(B) of ", b,
                               " has ", inner_b);
  if (!(da == db)) fail("matmul", "operands on different devices: ", da.str(), " and ", db.str());
}
}  // namespace impl

// 2-D: [M, K] · [K, N] -> [M, N] (before transposition).
template <Transpose TA = Transpose::no, Transpose TB = Transpose::no, class T, class A0, class A1, class B0, class B1>
auto matmul(const Tensor<T, A0, A1>& a, const Tensor<T, B0, B1>& b) {
  detail::check_matmul_types<TA, TB, A0, A1, B0, B1>();
  const bool ta = TA == Transpose::yes, tb = TB == Transpose::yes;
  GemmParams p;
  p.m = a.size(ta ? 1 : 0);
  p.k = a.size(ta ? 0 : 1);
  p.n = b.size(tb ? 0 : 1);
  p.trans_a = ta;
  p.trans_b = tb;
  impl::check_matmul_runtime(p.k, b.size(tb ? 1 : 0), a.shape().str(), b.shape().str(), a.device(), b.device());
  using Out = Tensor<T, detail::op_rows_t<TA, A0, A1>, detail::op_cols_t<TB, B0, B1>>;
  Out c = impl::gemm_result<Out>(typename Out::shape_type(p.m, p.n), p.k, a.device());
  gemm(p, a.device(), a.data(), b.data(), c.data());
  return c;
}

// Batched 3-D: [Bt, M, K] · [Bt, K, N] -> [Bt, M, N].
template <Transpose TA = Transpose::no, Transpose TB = Transpose::no, class T, class G, class A0, class A1, class H,
          class B0, class B1>
auto matmul(const Tensor<T, G, A0, A1>& a, const Tensor<T, H, B0, B1>& b) {
  detail::check_matmul_types<TA, TB, A0, A1, B0, B1>();
  static_assert(extents_compatible_v<G, H>, "qlora matmul: batch extents differ");
  if (a.size(0) != b.size(0)) fail("matmul", "batch extents differ: ", a.shape().str(), " and ", b.shape().str());
  const bool ta = TA == Transpose::yes, tb = TB == Transpose::yes;
  GemmParams p;
  p.batch = a.size(0);
  p.m = a.size(ta ? 2 : 1);
  p.k = a.size(ta ? 1 : 2);
  p.n = b.size(tb ? 1 : 2);
  p.trans_a = ta;
  p.trans_b = tb;
  p.stride_a = a.size(1) * a.size(2);
  p.stride_b = b.size(1) * b.size(2);
  p.stride_c = p.m * p.n;
  impl::check_matmul_runtime(p.k, b.size(tb ? 2 : 1), a.shape().str(), b.shape().str(), a.device(), b.device());
  using Out = Tensor<T, merged_extent_t<G, H>, detail::op_rows_t<TA, A0, A1>, detail::op_cols_t<TB, B0, B1>>;
  Out c = impl::gemm_result<Out>(typename Out::shape_type(p.batch, p.m, p.n), p.k, a.device());
  gemm(p, a.device(), a.data(), b.data(), c.data());
  return c;
}

// The differentiable matmul (2-D or batched 3-D).
template <Transpose TA = Transpose::no, Transpose TB = Transpose::no, class T, class... As, class... Bs>
auto matmul(const Variable<T, As...>& a, const Variable<T, Bs...>& b) {
  using detail::flip;
  auto c = matmul<TA, TB>(a.value(), b.value());
  auto backward = [a_val = a.value(), b_val = b.value(), a_node = a.node(), b_node = b.node()](const auto& d_c) {
    if (a_node) {
      if constexpr (TA == Transpose::no) accumulate_grad(a_node, matmul<Transpose::no, flip(TB)>(d_c, b_val));
      else accumulate_grad(a_node, matmul<TB, Transpose::yes>(b_val, d_c));
    }
    if (b_node) {
      if constexpr (TB == Transpose::no) accumulate_grad(b_node, matmul<flip(TA), Transpose::no>(a_val, d_c));
      else accumulate_grad(b_node, matmul<Transpose::yes, TA>(d_c, a_val));
    }
  };
  return make_result("matmul", std::move(c), std::move(backward), a, b);
}

QLORA_DISPATCH_END

// Whether this build and this CPU offer a CPU GEMM: Eigen always; oneDNN where qlora was built with it
// (cmake/QloraOneDnn.cmake); its bf16 math only on CPUs with bf16 units.
inline bool cpu_gemm_available(CpuGemm g) {
  switch (g) {
    case CpuGemm::eigen: return true;
#if QLORA_HAVE_ONEDNN
    case CpuGemm::onednn: return true;
    case CpuGemm::onednn_bf16: return cpu::OneDnnGemm<float>::cpu_has_bf16_units();
#else
    case CpuGemm::onednn:
    case CpuGemm::onednn_bf16: return false;
#endif
  }
  return false;
}

// "eigen", "onednn", "onednn-bf16": the names --cpu-gemm takes.
inline const char* cpu_gemm_name(CpuGemm g) {
  switch (g) {
    case CpuGemm::eigen: return "eigen";
    case CpuGemm::onednn: return "onednn";
    case CpuGemm::onednn_bf16: return "onednn-bf16";
  }
  return "?";
}

// The backend a --cpu-gemm name stands for (the inverse of cpu_gemm_name); nullopt for an unknown name.
inline std::optional<CpuGemm> cpu_gemm_named(std::string_view name) {
  for (const CpuGemm g : all_cpu_gemms)
    if (name == cpu_gemm_name(g)) return g;
  return std::nullopt;
}

// What runs: "Eigen 3.4.0 fp32" or oneDNN's description (library, ISA, kernel).
inline std::string describe_cpu_gemm(CpuGemm g) {
#if QLORA_HAVE_ONEDNN
  if (g != CpuGemm::eigen && cpu_gemm_available(g)) return cpu::OneDnnGemm<float>::describe(g);
#endif
  return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
         std::to_string(EIGEN_MINOR_VERSION) + (g == CpuGemm::eigen ? " fp32" : " fp32 (" + std::string(cpu_gemm_name(g)) + " not available)");
}

// The fastest CPU GEMM for a precision: bf16 → oneDNN bf16 where the CPU has bf16 units; otherwise (and for fp32)
// oneDNN fp32 where built, else Eigen.
inline CpuGemm fastest_cpu_gemm(bool bf16) {
  if (bf16 && cpu_gemm_available(CpuGemm::onednn_bf16)) return CpuGemm::onednn_bf16;
  return cpu_gemm_available(CpuGemm::onednn) ? CpuGemm::onednn : CpuGemm::eigen;
}
}  // namespace qlora

#if QLORA_HAVE_ONEDNN && !QLORA_COMPILED_KERNELS
#include "matmul_onednn.hpp"
#endif
