// The MPI engine of the Communicator (dist/communicator.hpp): CPU processes started by `mpirun` / `srun`, on one
// machine or many (Open MPI from Debian's libopenmpi-dev, or any MPI 3 library). Include it only in a translation unit
// built with MPI (CMake: MPI::MPI_CXX); the qlora program does when CMake finds MPI (QLORA_MPI).
//
// Never a hang. Each collective is started non-blocking and polled with a deadline (`timeout_seconds`, the
// TrainingArguments' ddp_timeout), and is preceded by a check-in: every rank sends rank 0 the number and the name of
// the collective it is entering. So rank 0 knows who has not come, and what everyone is doing:
//   - a rank that does not arrive in time (stopped, stuck, swapping): rank 0 names it and the collective, and ends
//     every rank (MPI_Abort);
//   - ranks in different collectives (their data gave them a different number of steps, a rank skipped an
//     evaluation): rank 0 names both collectives at the first divergence, not at a later deadlock;
//   - rank 0 itself not answering: the others wait a grace period longer, then say so and end the run.
// A rank that dies (a crash, a kill -9) is seen by the launcher, which ends the others and names it (mpirun: "process
// rank 1 ... exited on signal 9"); a rank that fails with an error prints it with its rank and calls abort().
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "communicator.hpp"

namespace qlora::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI unless the program already did (and then finalizes it when destroyed).
  explicit MpiCommunicator(double timeout_seconds = 1800) : timeout_(timeout_seconds) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        fail("dist", "MPI_Init_thread failed");
      owns_mpi_ = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override {
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int ranks_on_this_machine() const override { return local_size_; }
  double timeout_seconds() const { return timeout_; }
  std::string describe() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::string v(version, static_cast<std::size_t>(length));
    v = v.substr(0, v.find_first_of(",\n"));
    return qlora::detail::concat("MPI (", v, "), rank ", rank_, " of ", size_);
  }

  void all_reduce_sum(std::span<float> values, std::string_view what) override { reduce(values, MPI_FLOAT, what); }
  void all_reduce_sum(std::span<double> values, std::string_view what) override { reduce(values, MPI_DOUBLE, what); }
  using Communicator::all_reduce_sum;

  void broadcast(std::span<std::byte> bytes, int root, std::string_view what) override {
    check_in(what);
    for (std::size_t at = 0; at < bytes.size(); at += kChunk) {
      MPI_Request request;
      check(MPI_Ibcast(bytes.data() + at, count_of(bytes.size() - at), MPI_BYTE, root, comm_, &request), what);
      wait(request, what);
    }
  }

  std::vector<std::string> all_gather(const std::string& mine, std::string_view what) override {
    check_in(what);
    const auto length = static_cast<long long>(mine.size());
    std::vector<long long> lengths(static_cast<std::size_t>(size_));
    MPI_Request request;
    check(MPI_Iallgather(&length, 1, MPI_LONG_LONG, lengths.data(), 1, MPI_LONG_LONG, comm_, &request), what);
    wait(request, what);
    std::vector<int> counts(lengths.size()), offsets(lengths.size());
    long long total = 0;
    for (std::size_t r = 0; r < lengths.size(); ++r) {
      if (total + lengths[r] > INT_MAX) fail("dist", what, ": more than 2 GiB of text from the ranks");
      counts[r] = static_cast<int>(lengths[r]);
      offsets[r] = static_cast<int>(total);
      total += lengths[r];
    }
    std::string all(static_cast<std::size_t>(total), '\0');
    check(MPI_Iallgatherv(mine.data(), counts[static_cast<std::size_t>(rank_)], MPI_CHAR, all.data(), counts.data(),
                          offsets.data(), MPI_CHAR, comm_, &request), what);
    wait(request, what);
    std::vector<std::string> out;
    for (std::size_t r = 0; r < lengths.size(); ++r)
      out.push_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(counts[r])));
    return out;
  }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(comm_, exit_code);
    std::exit(exit_code);  // MPI_Abort does not return; this is for the compiler
  }

 private:
  static constexpr std::size_t kChunk = std::size_t{1} << 30;  // elements per MPI call (counts are ints)
  static constexpr int kCheckInTag = 7001, kGoTag = 7002;
  static constexpr double kGraceSeconds = 15;  // rank 0 reports first; the others wait this much longer
  struct CheckIn {
    std::int64_t sequence;
    char what[112];
  };

  static int count_of(std::size_t n) { return static_cast<int>(std::min(n, kChunk)); }
  // "1, 3": the ranks r with flags[r].
  static std::string ranks_where(const std::vector<bool>& flags) {
    std::vector<std::string> ranks;
    for (std::size_t r = 0; r < flags.size(); ++r)
      if (flags[r]) ranks.push_back(std::to_string(r));
    return joined(ranks);
  }

  template <class T>
  void reduce(std::span<T> values, MPI_Datatype type, std::string_view what) {
    check_in(what);
    for (std::size_t at = 0; at < values.size(); at += kChunk) {
      MPI_Request request;
      check(MPI_Iallreduce(MPI_IN_PLACE, values.data() + at, count_of(values.size() - at), type, MPI_SUM, comm_,
                           &request), what);
      wait(request, what);
    }
  }

  void check(int code, std::string_view what) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    fail("dist", "rank ", rank_, ": ", what, ": ", std::string(text, static_cast<std::size_t>(length)));
  }

  // Polls until done or the deadline. Waiting for the other ranks to arrive (`Pace::waiting`: they may still be
  // computing) spins briefly, then sleeps 200 µs between tests, leaving the cores to the ranks that compute. Once all
  // have arrived (`Pace::moving`), the collective is tested back to back: MPI moves a non-blocking collective on only
  // while it is tested, so this keeps a large sum at the library's bandwidth.
  enum class Pace { waiting, moving };
  template <class Done>
  bool poll(double seconds, Pace pace, Done&& done) const {
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      if (done()) return true;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > seconds) return false;
      if (pace == Pace::moving || waited < 0.002) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  // Rank 0 waits ddp_timeout; the others a grace period longer, so that rank 0, which knows more, reports first.
  void wait(MPI_Request& request, std::string_view what, Pace pace = Pace::moving) {
    int flag = 0;
    const double limit = rank_ == 0 ? timeout_ : timeout_ + kGraceSeconds;
    const bool done = poll(limit, pace, [&] {
      check(MPI_Test(&request, &flag, MPI_STATUS_IGNORE), what);
      return flag != 0;
    });
    if (done) return;
    if (rank_ == 0) {  // every rank checked in to this collective, and one stopped inside it
      std::vector<bool> others(static_cast<std::size_t>(size_), true);
      others[0] = false;
      fail("dist", "every rank entered '", what, "' but it did not complete within ", timeout_, " s (ddp_timeout): ",
           size_ == 2 ? "rank 1" : "one of ranks " + ranks_where(others), " stopped answering inside it; ending all ranks");
    }
    fail("dist", "rank ", rank_, " waited ", limit, " s in '", what, "' for the other ranks and rank 0, which watches "
         "them, did not report who is missing: rank 0 is not answering (ddp_timeout ", timeout_, " s); ending all ranks");
  }

  // Every rank tells rank 0 which collective it enters; rank 0 checks that all come, in time, to the same one, then
  // tells each that all are there (so the collective that follows runs at full speed, see poll).
  void check_in(std::string_view what) {
    ++sequence_;
    CheckIn mine{sequence_, {}};
    std::memcpy(mine.what, what.data(), std::min(what.size(), sizeof mine.what - 1));
    if (rank_ != 0) {
      MPI_Request request;
      check(MPI_Isend(&mine, sizeof mine, MPI_BYTE, 0, kCheckInTag, comm_, &request), what);
      wait(request, what, Pace::waiting);
      std::int64_t go = 0;
      check(MPI_Irecv(&go, 1, MPI_INT64_T, 0, kGoTag, comm_, &request), what);
      wait(request, what, Pace::waiting);
      return;
    }
    std::vector<CheckIn> theirs(static_cast<std::size_t>(size_));
    std::vector<MPI_Request> requests(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
    for (int r = 1; r < size_; ++r)
      check(MPI_Irecv(&theirs[static_cast<std::size_t>(r)], sizeof(CheckIn), MPI_BYTE, r, kCheckInTag, comm_,
                      &requests[static_cast<std::size_t>(r)]), what);
    std::vector<bool> arrived(static_cast<std::size_t>(size_), false);
    arrived[0] = true;
    const bool all = poll(timeout_, Pace::waiting, [&] {
      for (int r = 1; r < size_; ++r) {
        auto& req = requests[static_cast<std::size_t>(r)];
        if (arrived[static_cast<std::size_t>(r)]) continue;
        int flag = 0;
        check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), what);
        if (!flag) continue;
        arrived[static_cast<std::size_t>(r)] = true;
        const CheckIn& c = theirs[static_cast<std::size_t>(r)];
        if (c.sequence != sequence_ || std::strncmp(c.what, mine.what, sizeof mine.what) != 0)
          fail("dist", "the ranks went out of step: rank ", r, " is in '", std::string(c.what, strnlen(c.what, sizeof c.what)),
               "' (collective ", c.sequence, ") while rank 0 is in '", what, "' (collective ", sequence_,
               "); every rank must be started with the same flags, data and model");
      }
      return std::all_of(arrived.begin(), arrived.end(), [](bool a) { return a; });
    });
    if (all) {
      for (int r = 1; r < size_; ++r)
        check(MPI_Isend(&sequence_, 1, MPI_INT64_T, r, kGoTag, comm_, &requests[static_cast<std::size_t>(r)]), what);
      for (int r = 1; r < size_; ++r) wait(requests[static_cast<std::size_t>(r)], what);
      return;
    }
    std::vector<bool> missing(arrived.size());
    std::transform(arrived.begin(), arrived.end(), missing.begin(), [](bool a) { return !a; });
    const std::size_t count = static_cast<std::size_t>(std::count(missing.begin(), missing.end(), true));
    fail("dist", "rank", count == 1 ? " " : "s ", ranks_where(missing), " did not reach '", what,
         "' within ", timeout_, " s (ddp_timeout) while the other ranks waited there: stopped, stuck or far slower; "
         "ending all ranks");
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_size_ = 1;
  double timeout_;
  bool owns_mpi_ = false;
  std::int64_t sequence_ = 0;
};

}  // namespace qlora::dist
