// The CPU thread team: how many OpenMP threads a parallel region gets and which one runs the caller. One place for
// the OpenMP calls, so headers compile (single-threaded) without -fopenmp too.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace qlora::cpu {

// Threads a `#pragma omp parallel` region started here would get (1 without OpenMP).
inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// This thread's index in its team and the team's size (0 and 1 outside a parallel region or without OpenMP).
inline int thread_index() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int team_size() {
#if defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}

}  // namespace qlora::cpu
