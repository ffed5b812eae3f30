// Turns CUDA and cuBLAS status codes into qlora::Error with the component and what was being done.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../core/error.hpp"

namespace qlora::cuda {

inline void check(cudaError_t status, const char* component, const char* what) {
  if (status != cudaSuccess) fail(component, what, ": ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
}
inline void check(cublasStatus_t status, const char* component, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail(component, what, ": ", cublasGetStatusName(status));
}

}  // namespace qlora::cuda
