// The NCCL engine of the Communicator (dist/communicator.hpp): one process per GPU, the gradients summed on the GPUs
// by NCCL (NVLink, InfiniBand, sockets: NCCL picks), bootstrapped over another communicator — the MPI one
// (dist/mpi.hpp) under mpirun / srun, or a single process for one GPU. No transport of qlora's own: rank 0 makes the
// NCCL unique id and the bootstrap broadcasts it.
//
// Only the gradient buckets travel through NCCL (device() is the rank's GPU, so sum_gradients builds its buckets
// there); counts, losses, the initial adapter and the same-job check are host values and go through the bootstrap.
// Before each NCCL collective the bootstrap checks the ranks in (dist/mpi.hpp names a missing rank); the collective
// itself runs on the stream of the rank's device (so it is ordered after the copies of the gradients into the bucket,
// and they after the backward pass, without a device-wide synchronisation) and is polled against the deadline: on a
// timeout the NCCL communicator is aborted (ncclCommAbort) and the error names the collective — never a hang in a
// CUDA call.
//
// Status: compiled in CI (tests/cuda/dist.cu); it has not run on a GPU yet (docs/distributed.md).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "../core/device.hpp"
#include "../core/error.hpp"
#include "communicator.hpp"

namespace qlora::dist {

class NcclCommunicator final : public Communicator {
 public:
  // The ranks of `bootstrap`, each on its GPU `device` (cuda::device(local rank)), whose stream NCCL runs on.
  NcclCommunicator(Communicator& bootstrap, Device device, double timeout_seconds = 1800)
      : bootstrap_(bootstrap), device_(device), timeout_(timeout_seconds),
        stream_(static_cast<cudaStream_t>(device.stream().value)) {
    if (!device_.is_cuda()) fail("dist", "the NCCL communicator needs a CUDA device, got ", device_.str());
    ncclUniqueId id{};
    if (bootstrap_.is_root()) check(ncclGetUniqueId(&id), "creating the NCCL unique id");
    bootstrap_.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0, "NCCL unique id");
    cuda_check(cudaSetDevice(device_.index()), "selecting the GPU");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // initialisation returns at once; polled below against the deadline
    check(ncclCommInitRankConfig(&comm_, bootstrap_.size(), id, bootstrap_.rank(), &config), "ncclCommInitRank");
    wait_for_comm("ncclCommInitRank");
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return bootstrap_.rank(); }
  int size() const override { return bootstrap_.size(); }
  int ranks_on_this_machine() const override { return bootstrap_.ranks_on_this_machine(); }
  Device device() const override { return device_; }
  std::string describe() const override {
    int version = 0;
    ncclGetVersion(&version);
    return qlora::detail::concat("NCCL ", version / 10000, ".", version / 100 % 100, ".", version % 100, " on ",
                                 device_.str(), ", bootstrapped over ", bootstrap_.describe());
  }

  // `values` in GPU memory (the gradient buckets): NCCL; in host memory: the bootstrap.
  void all_reduce_sum(std::span<float> values, std::string_view what) override {
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, values.data()) != cudaSuccess || attributes.type != cudaMemoryTypeDevice) {
      cudaGetLastError();  // clear the error of a host pointer
      bootstrap_.all_reduce_sum(values, what);
      return;
    }
    bootstrap_.all_reduce_sum(std::span<double>(), what);  // the check-in: every rank is here, in the same collective
    check(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat, ncclSum, comm_, stream_), what);
    wait_for_stream(what);
  }
  void all_reduce_sum(std::span<double> values, std::string_view what) override { bootstrap_.all_reduce_sum(values, what); }
  using Communicator::all_reduce_sum;
  void broadcast(std::span<std::byte> bytes, int root, std::string_view what) override {
    bootstrap_.broadcast(bytes, root, what);
  }
  std::vector<std::string> all_gather(const std::string& mine, std::string_view what) override {
    return bootstrap_.all_gather(mine, what);
  }
  [[noreturn]] void abort(int exit_code) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    bootstrap_.abort(exit_code);
    std::exit(exit_code);  // the bootstrap's abort does not return; this is for the compiler
  }

 private:
  void check(ncclResult_t r, std::string_view what) const {
    if (r == ncclSuccess || r == ncclInProgress) return;
    fail("dist", "rank ", rank(), ": ", what, ": NCCL: ", ncclGetErrorString(r),
         r == ncclSystemError || r == ncclRemoteError ? " (a peer or the network failed)" : "");
  }
  void cuda_check(cudaError_t e, std::string_view what) const {
    if (e != cudaSuccess) fail("dist", "rank ", rank(), ": ", what, ": CUDA: ", cudaGetErrorString(e));
  }
  template <class Done>
  void poll(std::string_view what, Done&& done) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; !done(); ++i) {
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_) {
        if (comm_) ncclCommAbort(comm_);
        comm_ = nullptr;
        fail("dist", "rank ", rank(), ": '", what, "' did not complete within ", timeout_,
             " s (ddp_timeout): a GPU or a peer stopped answering; ending all ranks");
      }
      if (i > 200) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  void wait_for_comm(std::string_view what) {
    poll(what, [&] {
      ncclResult_t state = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &state), what);
      check(state, what);
      return state == ncclSuccess;
    });
  }
  void wait_for_stream(std::string_view what) {
    poll(what, [&] {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaErrorNotReady) {
        ncclResult_t state = ncclSuccess;
        check(ncclCommGetAsyncError(comm_, &state), what);
        check(state, what);
        return false;
      }
      cuda_check(e, what);
      return true;
    });
  }

  Communicator& bootstrap_;
  Device device_;
  double timeout_;
  cudaStream_t stream_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace qlora::dist
