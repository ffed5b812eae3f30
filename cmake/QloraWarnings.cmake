# Strict warnings for qlora's own translation units. Eigen is a SYSTEM include (its warnings are not ours);
# GCC 12 reports false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen's GEMM is inlined into
# our code at -O3 -march=native, so that one warning is off (GCC only: clang has no such warning and rejects the flag). nvcc's #20012 (__host__/__device__ on Eigen's defaulted members) is suppressed so -Werror can stay on.
function(qlora_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-maybe-uninitialized -std=c++20 -Werror=all-warnings -diag-suppress=20012 --expt-relaxed-constexpr>)
  target_link_libraries(${target} PRIVATE qlora::qlora qlora_build_flags)
endfunction()
