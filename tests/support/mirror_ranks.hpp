// A dist::Communicator for tests: rank 0 of `ranks` whose other ranks hold the same values as this one (so a sum is
// ranks × the value), whose broadcast gives every value 7, and whose all_gather gives the texts it was made with.
// It records the name of each sum.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <qlora/dist/communicator.hpp>

namespace qlora::test {

class MirrorRanks final : public dist::Communicator {
 public:
  explicit MirrorRanks(int ranks, std::vector<std::string> gathered = {}) : ranks_(ranks), gathered_(std::move(gathered)) {}
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  std::string describe() const override { return "mirror"; }
  void all_reduce_sum(std::span<float> v, std::string_view what) override {
    names.emplace_back(what);
    for (float& x : v) x *= static_cast<float>(ranks_);
  }
  void all_reduce_sum(std::span<double> v, std::string_view what) override {
    names.emplace_back(what);
    for (double& x : v) x *= ranks_;
  }
  void broadcast(std::span<std::byte> bytes, int, std::string_view) override {  // rank 0's values: all 7
    const std::span<float> f(reinterpret_cast<float*>(bytes.data()), bytes.size() / sizeof(float));
    std::fill(f.begin(), f.end(), 7.0F);
  }
  std::vector<std::string> all_gather(const std::string&, std::string_view) override { return gathered_; }
  [[noreturn]] void abort(int) override { throw std::logic_error("abort"); }
  using Communicator::all_reduce_sum;
  std::vector<std::string> names;

 private:
  int ranks_;
  std::vector<std::string> gathered_;
};

}  // namespace qlora::test
