// The CPU kernels every model and test uses, compiled once: Eigen's fp32 and fp64 GEMMs (ops/matmul.hpp declares
// them extern where QLORA_COMPILED_KERNELS is set, i.e. in everything that links qlora::models), the oneDNN
// backend's calls where qlora is built with oneDNN (ops/matmul_onednn.hpp), and the AVX2 decode kernel for nvcc's
// translation units, which cannot compile it (ops/packed_gemv.hpp).
#include <qlora/ops/matmul.hpp>
#include <qlora/ops/packed_gemv.hpp>

template void qlora::cpu::detail::gemm_native<float>(const qlora::GemmParams&, const float*, const float*, float*);
template void qlora::cpu::detail::gemm_native<double>(const qlora::GemmParams&, const double*, const double*,
                                                      double*);

#if QLORA_HAVE_ONEDNN
#include <qlora/ops/matmul_onednn.hpp>

template struct qlora::cpu::OneDnnGemm<float>;
#endif

#if QLORA_PACKED_GEMV_AVX2
void qlora::packed_gemv_host_avx2(const PackedMatrix& m, const QuantizedActivation& x, float* y) {
  packed_gemv(m, x, y, PackedKernel::avx2);
}
bool qlora::packed_gemv_host_has_avx2() { return packed_kernels::cpu_has_avx2(); }
#endif
