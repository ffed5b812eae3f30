// The CPU thread team: how many OpenMP threads a parallel region gets and which one runs the caller. One place for
// the OpenMP calls, so headers compile (single-threaded) without -fopenmp too.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace qlora::cpu {

// Threads a `#pragma omp parallel` region started here would get; this thread's index in its team and the team's
// size (0 and 1 outside a parallel region). Without OpenMP: 1, 0 and 1. set_max_threads: the size of later teams.
#if defined(_OPENMP)
inline int max_threads() { return omp_get_max_threads(); }
inline int thread_index() { return omp_get_thread_num(); }
inline int team_size() { return omp_get_num_threads(); }
inline void set_max_threads(int n) { omp_set_num_threads(n); }
#else
inline int max_threads() { return 1; }
inline int thread_index() { return 0; }
inline int team_size() { return 1; }
inline void set_max_threads(int) {}
#endif

}  // namespace qlora::cpu
