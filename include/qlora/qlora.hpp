// Everything that runs on the CPU: core tensors and expressions, autograd, ops. Compile with any C++20 compiler;
// the same headers compiled by nvcc also run the ops on CUDA tensors (include <qlora/cuda.hpp> for CUDA devices).
#pragma once

#include "autograd/gradcheck.hpp"
#include "autograd/tape.hpp"
#include "autograd/variable.hpp"
#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/expr.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
