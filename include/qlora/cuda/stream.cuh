// Where CUDA work runs: a GPU and one of its streams (`Stream`, what every launcher takes last), the `DeviceGuard`
// that makes that GPU current for a scope, and `stream_wait`, which orders one stream after another without the
// host waiting.
//
// The current device matters to cudaMalloc, to kernel launches (a launch on a stream of another GPU fails), to the
// null stream (it is the *current* GPU's default stream) and to cuBLAS handles, so each of those runs under a guard.
// A Device converts to its Stream implicitly: an op passes `x.device()` and the launcher runs on x's GPU and stream.
#pragma once

#include <cuda_runtime.h>

#include "../core/device.hpp"
#include "check.cuh"

namespace qlora::cuda {

inline cudaStream_t to_cuda(StreamHandle s) { return static_cast<cudaStream_t>(s.value); }
inline StreamHandle to_handle(cudaStream_t s) { return StreamHandle{static_cast<void*>(s)}; }

// A GPU index and one of its streams (null: the GPU's default stream). Not owning.
struct Stream {
  int device = 0;
  cudaStream_t handle = nullptr;
  GpuGemm gemm = GpuGemm::fp32;  // the device's GEMM math (cuBLAS calls of fp32 operands read it)

  Stream(int gpu, cudaStream_t stream) : device(gpu), handle(stream) {}
  Stream(const Device& d)  // NOLINT(google-explicit-constructor): a Device is where its work runs
      : device(d.index()), handle(to_cuda(d.stream())), gemm(d.gpu_gemm()) {
    require(d.is_cuda(), "cuda", "a CUDA launch on ", d.str());
  }
};

// Makes GPU `device` current until the end of the scope, then restores the previous one (also when unwinding).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cuda", "cudaGetDevice");
    if (device == previous_) return;
    if (const cudaError_t status = cudaSetDevice(device); status != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it, or the next launch check would report it
      check(status, "cuda", "cudaSetDevice");
    }
    switched_ = true;
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);  // cannot fail: previous_ was current a moment ago
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// The GPU that is current now.
inline int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cuda", "cudaGetDevice");
  return device;
}

// An event for ordering only (no timing), destroyed with the object; CUDA keeps it until the work waiting on it is done.
class Event {
 public:
  explicit Event(int device) {
    const DeviceGuard guard(device);
    check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cuda", "cudaEventCreateWithFlags");
  }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_{};
};

// Work queued on `waiter` from now on starts after the work queued on `waited` so far (both on any GPU).
inline void stream_wait(const Stream& waiter, const Stream& waited) {
  if (waiter.device == waited.device && waiter.handle == waited.handle) return;
  const Event done(waited.device);
  {
    const DeviceGuard guard(waited.device);
    check(cudaEventRecord(done.get(), waited.handle), "cuda", "cudaEventRecord");
  }
  const DeviceGuard guard(waiter.device);
  check(cudaStreamWaitEvent(waiter.handle, done.get(), 0), "cuda", "cudaStreamWaitEvent");
}

// Waits on the host for the work queued on `stream`.
inline void synchronize(const Stream& stream) {
  const DeviceGuard guard(stream.device);
  check(cudaStreamSynchronize(stream.handle), "cuda", "cudaStreamSynchronize");
}

}  // namespace qlora::cuda
