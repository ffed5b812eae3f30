// --device of the subcommands that run a model: cpu, cuda or cuda:N. The GPU is there only in a program compiled by
// nvcc (tools/CMakeLists.txt builds it so when the CUDA toolkit is found); elsewhere, and on a machine without the
// GPU named, the option is refused with what is missing.
#pragma once

#include <optional>
#include <string>

#include <qlora/core/config.hpp>
#include <qlora/core/device.hpp>
#include <qlora/core/error.hpp>
#if QLORA_CUDA_COMPILER
#include <qlora/cuda/memory.cuh>
#endif

namespace qlora::cli {

// The GPU index of "cuda" (0) or "cuda:N"; -1 for "cpu"; an error naming the text for anything else.
inline int gpu_index_of(const std::string& text, const char* command) {
  const std::optional<int> index = gpu_index_named(text);
  if (!index) fail(command, "--device ", text, ": use cpu, cuda or cuda:N (N the GPU's index)");
  return *index;
}

// The device the model, its adapters and the optimizer live on: the CPU with `gemm` for its products, or a GPU.
inline Device training_device(const std::string& text, CpuGemm gemm, const char* command) {
  const int gpu = gpu_index_of(text, command);
  if (gpu < 0) return Device::cpu(gemm);
#if QLORA_CUDA_COMPILER
  const int count = cuda::device_count();
  if (gpu >= count)
    fail(command, "--device ", text, ": ", count == 0 ? std::string("no CUDA GPU on this machine (or no driver)")
                                                      : detail::concat("this machine has ", count, " GPU(s), cuda:0 to cuda:", count - 1));
  return cuda::device(gpu);
#else
  fail(command, "--device ", text, ": this qlora was built without CUDA (the toolkit's nvcc was not found when it was "
       "configured): install the CUDA toolkit and build again to train on a GPU");
#endif
}

// Bytes free on `device`'s GPU now (cudaMemGetInfo); -1 on the CPU or in a program compiled without CUDA.
inline double gpu_free_bytes(const Device& device) {
#if QLORA_CUDA_COMPILER
  if (device.is_cuda()) {
    const cuda::DeviceGuard guard(device.index());
    std::size_t free = 0, total = 0;
    cuda::check(cudaMemGetInfo(&free, &total), "finetune", "cudaMemGetInfo");
    return static_cast<double>(free);
  }
#else
  (void)device;
#endif
  return -1;
}

}  // namespace qlora::cli
