// cuBLAS GEMM for ops/matmul.hpp: row-major C = op(A)·op(B) computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e.
// cuBLAS is called with the operands swapped. fp32 and bf16 accumulate in fp32 (CUBLAS_COMPUTE_32F, no TF32, so the
// fp32 result is comparable with the CPU reference); fp64 in fp64. A device whose GEMMs run in bf16 (GpuGemm::bf16)
// takes fp32 operands to the tensor cores as bf16 (CUBLAS_COMPUTE_32F_FAST_16BF, fp32 accumulation). One cuBLAS handle per thread, GPU and stream:
// a handle belongs to the GPU current when it was made, and cublasSetStream is handle state that two threads or two
// streams must not share.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora {
struct GemmParams;  // ops/matmul.hpp
}

namespace qlora::cuda {

// A cuBLAS handle made on `stream`'s GPU and bound to the stream.
class BlasHandle {
 public:
  explicit BlasHandle(const Stream& stream) {
    const DeviceGuard guard(stream.device);
    check(cublasCreate(&handle_), "matmul", "cublasCreate");
    if (const cublasStatus_t status = cublasSetStream(handle_, stream.handle); status != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle_);
      check(status, "matmul", "cublasSetStream");
    }
  }
  ~BlasHandle() { cublasDestroy(handle_); }
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_{};
};

// This thread's handle for `stream` (made on first use). Call cuBLAS with it under a DeviceGuard for stream.device.
inline cublasHandle_t blas_handle(const Stream& stream) {
  thread_local std::map<std::pair<int, std::uintptr_t>, std::unique_ptr<BlasHandle>> handles;
  auto& h = handles[{stream.device, reinterpret_cast<std::uintptr_t>(stream.handle)}];
  if (!h) h = std::make_unique<BlasHandle>(stream);
  return h->get();
}

template <class T>
struct blas_type;
template <>
struct blas_type<float> {
  static constexpr cudaDataType_t data = CUDA_R_32F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  using scale = float;
};
template <>
struct blas_type<bf16> {
  static constexpr cudaDataType_t data = CUDA_R_16BF;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  using scale = float;
};
template <>
struct blas_type<f16> {
  static constexpr cudaDataType_t data = CUDA_R_16F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  using scale = float;
};
template <>
struct blas_type<double> {
  static constexpr cudaDataType_t data = CUDA_R_64F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
  using scale = double;
};

// The compute type of a cuBLAS call with operands of type T on `stream`: fp32 operands on a device whose GEMMs run in
// bf16 (GpuGemm::bf16) go to the tensor cores as bf16 with fp32 accumulation; everything else as blas_type says.
template <class T>
cublasComputeType_t blas_compute(const Stream& stream) {
  if constexpr (std::is_same_v<T, float>)
    if (stream.gemm == GpuGemm::bf16) return CUBLAS_COMPUTE_32F_FAST_16BF;
  return blas_type<T>::compute;
}

template <class T, class Params>
void gemm(const Params& p, const T* a, const T* b, T* c, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  using BT = blas_type<T>;
  const auto alpha = static_cast<typename BT::scale>(p.alpha);
  const auto beta = static_cast<typename BT::scale>(p.beta);
  const int lda = static_cast<int>(p.trans_a ? p.m : p.k);  // row length of A as stored
  const int ldb = static_cast<int>(p.trans_b ? p.k : p.n);
  check(cublasGemmStridedBatchedEx(blas_handle(stream), p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(p.n), static_cast<int>(p.m),
                                   static_cast<int>(p.k), &alpha, b, BT::data, ldb, p.stride_b, a, BT::data, lda,
                                   p.stride_a, &beta, c, BT::data, static_cast<int>(p.n), p.stride_c,
                                   static_cast<int>(p.batch), blas_compute<T>(stream), CUBLAS_GEMM_DEFAULT),
        "matmul", "cublasGemmStridedBatchedEx");
}

}  // namespace qlora::cuda
