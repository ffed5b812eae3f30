// Compile-time switches shared by every header: host/device annotations and the dispatch namespace.
//
// Functions that dispatch an op to the CPU or the CUDA implementation live in an inline namespace whose name depends
// on whether the translation unit is compiled by nvcc (`with_cuda`) or a host compiler (`host_only`). The two bodies
// differ, so giving them different mangled names keeps a program that mixes g++ and nvcc objects free of ODR
// violations (the same trick Thrust and CUB use for their ABI namespaces). Besides those functions only types that
// never cross a translation unit live in it: the expression nodes of core/expr.hpp.
#pragma once

#include <cstdint>

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

namespace qlora {

using index_t = std::int64_t;

// True in translation units compiled by nvcc: only they can run ops on CUDA tensors.
inline constexpr bool kCompiledWithCuda = QLORA_CUDA_COMPILER;

}  // namespace qlora
