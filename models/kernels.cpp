// The CPU kernels every model and test uses, compiled once: Eigen's fp32 and fp64 GEMMs (ops/matmul.hpp declares
// them extern where QLORA_COMPILED_KERNELS is set, i.e. in everything that links qlora::models), and the oneDNN
// backend's calls where qlora is built with oneDNN (ops/matmul_onednn.hpp).
#include <qlora/ops/matmul.hpp>

template void qlora::cpu::detail::gemm_native<float>(const qlora::GemmParams&, const float*, const float*, float*);
template void qlora::cpu::detail::gemm_native<double>(const qlora::GemmParams&, const double*, const double*,
                                                      double*);

#if QLORA_HAVE_ONEDNN
#include <qlora/ops/matmul_onednn.hpp>

template struct qlora::cpu::OneDnnGemm<float>;
#endif
