// Compile-time switches shared by every header: host/device annotations, the dispatch namespace and the CUDA branch
// of an op's dispatch (QLORA_ON_CUDA).
//
// Functions that dispatch an op to the CPU or the CUDA implementation live in an inline namespace whose name depends
// on whether the translation unit is compiled by nvcc (`with_cuda`) or a host compiler (`host_only`). The two bodies
// differ, so giving them different mangled names keeps a program that mixes g++ and nvcc objects free of ODR
// violations (the same trick Thrust and CUB use for their ABI namespaces). Besides those functions only types that
// never cross a translation unit live in it: the expression nodes of core/expr.hpp.
#pragma once

#include <cstdint>
#include <string>

#include "error.hpp"

#if defined(__CUDACC__)
#define QLORA_HD __host__ __device__
#define QLORA_DEVICE __device__
#define QLORA_DISPATCH_BEGIN inline namespace with_cuda {
#define QLORA_CUDA_COMPILER 1
#else
#define QLORA_HD
#define QLORA_DEVICE
#define QLORA_DISPATCH_BEGIN inline namespace host_only {
#define QLORA_CUDA_COMPILER 0
#endif
#define QLORA_DISPATCH_END }

// The CUDA branch of an op's device dispatch, written once for every op:
//
//   if (x.device().is_cpu()) cpu::rmsnorm_forward(...);
//   else QLORA_ON_CUDA("rmsnorm", x.device(), cuda::rmsnorm_forward(..., x.device()));
//
// nvcc compiles the statements (the launchers take the device, i.e. its GPU and stream, last). A host compiler cannot
// even name the cuda:: launchers, so there the statements vanish and the branch throws "[rmsnorm] tensors are on
// cuda:0 but this translation unit was compiled without CUDA: compile it with nvcc". That is why it is a macro.
#if defined(__CUDACC__)
#define QLORA_ON_CUDA(op, device, ...) \
  {                                    \
    __VA_ARGS__;                       \
  }
#else
#define QLORA_ON_CUDA(op, device, ...) ::qlora::detail::fail_without_cuda(op, (device).str())
#endif

namespace qlora {

using index_t = std::int64_t;

// True in translation units compiled by nvcc: only they can run ops on CUDA tensors.
inline constexpr bool kCompiledWithCuda = QLORA_CUDA_COMPILER;

namespace detail {
// What QLORA_ON_CUDA does in a translation unit compiled without CUDA.
[[noreturn]] inline void fail_without_cuda(const char* op, const std::string& device) {
  fail(op, "tensors are on ", device, " but this translation unit was compiled without CUDA: compile it with nvcc");
}
}  // namespace detail

}  // namespace qlora
