// The ranks of a data-parallel run and the collectives the trainer needs from them: sums of gradients and counts,
// a broadcast of the initial adapter, and an all-gather of small texts (the check that every rank runs the same job).
// A run-time value, not a type: the trainer holds a `Communicator&`, a single process is `SingleProcess`, and the
// engines are `MpiCommunicator` (dist/mpi.hpp, CPU processes, Open MPI or MPICH) — no transport of qlora's own.
//
// Every collective names what it is for ("gradients of step 12"): an engine that watches for a rank that stops
// answering says which collective it was waiting in, and which rank did not come.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/device.hpp"

namespace qlora::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this machine (this one included): they share its memory and cores.
  virtual int ranks_on_this_machine() const { return 1; }
  // "single process", "MPI (Open MPI v4.1.4), 2 ranks"
  virtual std::string describe() const = 0;
  // Where the memory of all_reduce_sum(span<float>) lives (the gradients' buckets): the CPU for MPI, the rank's GPU
  // for NCCL. The other collectives take host memory.
  virtual Device device() const { return Device::cpu(); }
  // values[i] = the sum over ranks of values[i], on every rank.
  virtual void all_reduce_sum(std::span<float> values, std::string_view what) = 0;
  virtual void all_reduce_sum(std::span<double> values, std::string_view what) = 0;
  // bytes = root's bytes, on every rank.
  virtual void broadcast(std::span<std::byte> bytes, int root, std::string_view what) = 0;
  // Every rank's `mine`, in rank order, on every rank.
  virtual std::vector<std::string> all_gather(const std::string& mine, std::string_view what) = 0;
  // Ends every rank of the run at once (after an error on this rank: the others may be waiting in a collective).
  [[noreturn]] virtual void abort(int exit_code) = 0;

  bool is_root() const { return rank() == 0; }
  double all_reduce_sum(double value, std::string_view what) {
    all_reduce_sum(std::span<double>(&value, 1), what);
    return value;
  }
};

// One process: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  void all_reduce_sum(std::span<float>, std::string_view) override {}
  void all_reduce_sum(std::span<double>, std::string_view) override {}
  void broadcast(std::span<std::byte>, int, std::string_view) override {}
  std::vector<std::string> all_gather(const std::string& mine, std::string_view) override { return {mine}; }
  [[noreturn]] void abort(int exit_code) override { std::exit(exit_code); }
  using Communicator::all_reduce_sum;
};

inline SingleProcess& single_process() {
  static SingleProcess one;
  return one;
}

}  // namespace qlora::dist
