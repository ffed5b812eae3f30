// The NCCL communicator (dist/nccl.hpp) on the GPUs of this machine: built wherever the toolkit has NCCL (CI
// compiles it), run where there is a GPU. One process holds one rank, so on one machine this checks rank 0 of a
// 1-rank NCCL communicator (bootstrapped over a single process): initialisation, a sum in GPU memory through NCCL, a
// sum in host memory through the bootstrap, and sum_gradients' buckets on the GPU. The multi-rank check is
// `mpirun -np <GPUs> qlora finetune --device cuda` (docs/distributed.md), once training runs on GPUs.
#include <doctest/doctest.h>

#if QLORA_HAVE_NCCL
#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/dist/data_parallel.hpp>
#include <qlora/dist/nccl.hpp>

using namespace qlora;

TEST_SUITE("cuda") {
  TEST_CASE("NCCL communicator: one rank on this GPU sums in GPU memory and sends host values through its bootstrap") {
    dist::NcclCommunicator nccl(dist::single_process(), cuda::device(), 60);
    CHECK(nccl.size() == 1);
    CHECK(nccl.device() == cuda::device());
    CHECK(nccl.describe().find("NCCL") == 0);
    const auto host = test::random_tensor<Tensor<float, Dyn>>(3, -1, 1, 1001);
    const auto on_gpu = host.to(cuda::device());
    nccl.all_reduce_sum(std::span<float>(on_gpu.data(), 1001), "gpu values");  // through NCCL: 1 rank, the identity
    QLORA_CHECK_CLOSE(on_gpu, host, 0.0, 0.0);
    double counts[2] = {3, 4};
    nccl.all_reduce_sum(std::span<double>(counts), "host values");
    CHECK(counts[1] == 4);
    CHECK_THROWS_WITH_AS(dist::NcclCommunicator(dist::single_process(), Device::cpu()),
                         "[dist] the NCCL communicator needs a CUDA device, got cpu", Error);
  }
}
#endif
