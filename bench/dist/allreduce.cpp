// The all-reduce of data-parallel training (dist/data_parallel.hpp sum_gradients) over MPI, timed at the sizes of
// real LoRA gradients: run it under the launcher, e.g.
//   mpirun -np 2 build/bin/qlora_allreduce_bench [--json FILE]
// For each size: median seconds of one sum_gradients (bucketed, 25 MiB buckets), the bytes each rank sends, and the
// bus bandwidth as NCCL's tests count it (2 (n-1)/n x bytes / seconds), next to one blocking MPI_Allreduce of the
// same bytes (the library's own rate, without buckets, copies, deadlines or the check-in). Rank 0 prints a table (and
// writes JSON).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qlora/dist/data_parallel.hpp>
#include <qlora/dist/mpi.hpp>

int main(int argc, char** argv) {
  using namespace qlora;
  std::string json_path;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--json") json_path = argv[i + 1];
  dist::MpiCommunicator comm(60);
  struct Case {
    const char* name;
    index_t parameters;
  };
  // LoRA parameter counts: r 16 on all 7 projections of Gemma 3 270M / 1B / 4B, and r 64 on 4B.
  const Case cases[] = {{"1 Ki floats", 1024}, {"Gemma 3 270M r16 all-linear", 3796992},
                        {"Gemma 3 1B r16 all-linear", 13045760}, {"Gemma 3 4B r16 all-linear", 29802496},
                        {"Gemma 3 4B r64 all-linear", 119209984}};
  nlohmann::json out = nlohmann::json::array();
  if (comm.is_root())
    std::printf("%s\n%-30s %10s %10s %10s %16s\n", comm.describe().c_str(), "gradients", "MiB", "ms", "bus GB/s",
                "MPI_Allreduce ms");
  for (const Case& c : cases) {
    // the parameters as 4 tensors (buckets split between them as in a model)
    ParameterList params;
    std::vector<Variable<float, Dyn>> vars;
    for (int k = 0; k < 4; ++k) {
      auto v = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::full(1.0F, c.parameters / 4));
      vars.push_back(v);
      params.emplace_back("p" + std::to_string(k), v);
    }
    std::vector<double> seconds;
    Tensor<float, Dyn> scratch;
    for (int rep = 0; rep < 7; ++rep) {
      for (const auto& p : params) p.ensure_grad();
      const auto start = std::chrono::steady_clock::now();
      dist::sum_gradients(comm, params, "benchmark", scratch);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::vector<float> raw(static_cast<std::size_t>(c.parameters / 4 * 4), 1.0F);
    std::vector<double> raw_seconds;
    for (int rep = 0; rep < 7; ++rep) {
      MPI_Barrier(MPI_COMM_WORLD);
      const auto start = std::chrono::steady_clock::now();
      MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(raw.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      raw_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(raw_seconds.begin(), raw_seconds.end());
    const double raw_median = raw_seconds[raw_seconds.size() / 2];
    const double bytes = static_cast<double>(c.parameters / 4 * 4) * sizeof(float);
    const double bus = 2.0 * (comm.size() - 1) / comm.size() * bytes / median / 1e9;
    if (comm.is_root())
      std::printf("%-30s %10.1f %10.3f %10.2f %16.3f\n", c.name, bytes / (1 << 20), median * 1e3, bus, raw_median * 1e3);
    out.push_back({{"case", c.name}, {"bytes", bytes}, {"seconds", median}, {"bus_gb_per_s", bus}, {"ranks", comm.size()},
                   {"mpi_allreduce_seconds", raw_median}});
  }
  if (comm.is_root() && !json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
