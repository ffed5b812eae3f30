// The runner of qlora_cuda_tests. Without a GPU it says so and exits 77, which CTest reports as "skipped"
// (SKIP_RETURN_CODE); with one it runs every case, each comparing a CUDA kernel with the CPU reference.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include <qlora/cuda.hpp>

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int gpus = qlora::cuda::device_count();
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::string(argv[i]).rfind("--list", 0) == 0 || std::string(argv[i]).rfind("-l", 0) == 0;
  if (gpus == 0 && !listing) {
    std::printf("qlora_cuda_tests: no CUDA GPU found (cudaGetDeviceCount reports none): skipping all CUDA tests\n");
    return 77;
  }
  cudaDeviceProp prop{};
  if (gpus > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("qlora_cuda_tests: running on %s (sm_%d%d, %.1f GiB)\n", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1 << 30));
  return context.run();
}
