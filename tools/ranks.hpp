// The ranks `qlora finetune` runs on: one process, or, when an MPI launcher started it (mpirun / mpiexec, srun), the
// MPI communicator of dist/mpi.hpp. Under a launcher each rank
//   - takes its share of this machine's cores for its OpenMP threads (OMP_NUM_THREADS wins when set): the CPUs it
//     may run on (its affinity: `mpirun --bind-to none` leaves all, `--map-by slot:PE=k` gives k) divided among the
//     ranks of this machine that share them;
//   - prints nothing but its errors unless it is rank 0, whose output is the run's;
//   - on an error prints it with its rank and ends every rank (the others may wait in a collective).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <qlora/core/error.hpp>
#include <qlora/core/threads.hpp>
#include <qlora/dist/communicator.hpp>
#if QLORA_HAVE_MPI
#include <qlora/dist/mpi.hpp>
#endif

namespace qlora::cli {

namespace ranks_detail {
inline std::unique_ptr<dist::Communicator> owned;  // lives to the end of the program (MPI_Finalize at exit)
inline FILE* errors = nullptr;                      // where errors go (a quiet rank's stderr is /dev/null)
}  // namespace ranks_detail

// The ranks of this run (a single process when `start_ranks` was not called or found no launcher).
inline dist::Communicator& ranks() {
  return ranks_detail::owned ? *ranks_detail::owned : static_cast<dist::Communicator&>(dist::single_process());
}

// Where the program prints its errors.
inline FILE* error_output() { return ranks_detail::errors ? ranks_detail::errors : stderr; }

// The number of processes the launcher started, from its environment (0: not started by one).
inline long launcher_ranks(std::string* which = nullptr) {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"})
    if (const char* v = std::getenv(var)) {
      if (which) *which = std::string(var) + "=" + v;
      return std::strtol(v, nullptr, 10);
    }
  if (std::getenv("SLURM_PROCID") && std::getenv("SLURM_NTASKS")) {
    if (which) *which = std::string("SLURM_NTASKS=") + std::getenv("SLURM_NTASKS");
    return std::strtol(std::getenv("SLURM_NTASKS"), nullptr, 10);
  }
  return 0;
}

// Joins the launcher's ranks when there is one; `timeout_seconds` is ddp_timeout. Returns the ranks.
inline dist::Communicator& start_ranks(double timeout_seconds) {
  std::string which;
  const long launched = launcher_ranks(&which);
  if (launched <= 0) return ranks();
#if QLORA_HAVE_MPI
  auto mpi = std::make_unique<dist::MpiCommunicator>(timeout_seconds);
  const int here = mpi->ranks_on_this_machine();
  if (!std::getenv("OMP_NUM_THREADS")) {
    cpu_set_t set;
    int usable = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) usable = CPU_COUNT(&set);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    // bound to a few CPUs of its own (affinity smaller than the machine): all of them; else an equal share
    const int threads = usable > 0 && usable < cores ? usable : static_cast<int>(std::max(1L, cores / here));
    cpu::set_max_threads(threads);
  }
  if (mpi->rank() != 0) {
    const int saved = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) {
      ranks_detail::errors = ::fdopen(saved, "w");
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::close(null);
    }
  }
  std::fprintf(stderr, "qlora: %s, %d on this machine, %d thread%s per rank\n", mpi->describe().c_str(), here,
               cpu::max_threads(), cpu::max_threads() == 1 ? "" : "s");
  ranks_detail::owned = std::move(mpi);
  return ranks();
#else
  (void)timeout_seconds;
  if (launched > 1)
    fail("finetune", "started by an MPI launcher (", which, ") but this qlora was built without MPI: the ", launched,
         " processes would each train alone and write over one another. Install MPI (apt-get install libopenmpi-dev "
         "openmpi-bin) and build again, or run one process");
  return ranks();
#endif
}

// Prints an error of this rank and, when there are several, ends them all; returns the exit code otherwise.
inline int report_error(const char* what) {
  dist::Communicator& r = ranks();
  if (r.size() > 1) {
    std::fprintf(error_output(), "qlora: rank %d: %s\n", r.rank(), what);
    std::fflush(error_output());
    r.abort(1);
  }
  std::fprintf(error_output(), "qlora: %s\n", what);
  return 1;
}

}  // namespace qlora::cli
