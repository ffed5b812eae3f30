// CUDA devices and kernels. Include from translation units compiled by nvcc; together with <qlora/qlora.hpp> it
// lets every op run on tensors placed on qlora::cuda::device(i) (GPU i, default stream) or on another stream of it
// (cuda::new_stream_device(i), cuda::device_on(i, stream)).
#pragma once

#include "cuda/check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/matmul.cuh"
#include "cuda/memory.cuh"
#include "cuda/reduce.cuh"
#include "cuda/stream.cuh"
#include "qlora.hpp"
