// AdamW8bit against bitsandbytes 0.50.2 on the CPU (tests/data/bnb_adamw8bit from tests/golden/bnb_adamw8bit.py):
// four steps with a learning-rate change, an 8-bit parameter (5000 elements) and a 32-bit one (300, below
// min_8bit_size). Every state byte and absmax must be equal, the 32-bit path's states and weights bit-identical;
// the 8-bit path's weights may differ in the last bit of an intermediate (torch's CPU sqrt is not correctly
// rounded, ours is), which shows as at most 1e-9 absolute where an update nearly cancels a weight.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "support/check.hpp"

#include <qlora/optim/adamw8bit.hpp>

using namespace qlora;

namespace {
template <class T>
std::vector<T> read(const std::string& name, std::size_t n) {
  std::vector<T> v(n);
  std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/bnb_adamw8bit/" + name + ".bin", std::ios::binary);
  REQUIRE(in.good());
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  return v;
}
std::int64_t ulps(float a, float b) {
  std::int32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return std::abs(static_cast<std::int64_t>(x) - static_cast<std::int64_t>(y));
}
}  // namespace

TEST_SUITE("optim") {
  TEST_CASE("AdamW8bit state bytes equal bitsandbytes' and weights agree to the last bit over four steps") {
    auto big = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::from(read<float>("big_init", 5000), 5000));
    auto small = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::from(read<float>("small_init", 300), 300));
    AdamW8bit opt({Parameter("big", big), Parameter("small", small)}, AdamW8bitConfig{0.9, 0.999, 1e-8, 0.01});
    CHECK(opt.states()[0].eight_bit);
    CHECK_FALSE(opt.states()[1].eight_bit);
    const double lrs[] = {1e-3, 1e-3, 2e-3, 2e-3};
    for (int step = 1; step <= 4; ++step) {
      const std::string t = std::to_string(step);
      opt.zero_grad();
      // give the optimizer the recorded gradients: a backward of sum(p * g) leaves exactly g
      auto gb = Variable<float, Dyn>(Tensor<float, Dyn>::from(read<float>("big_grad_" + t, 5000), 5000));
      auto gs = Variable<float, Dyn>(Tensor<float, Dyn>::from(read<float>("small_grad_" + t, 300), 300));
      backward(sum(big * gb));
      backward(sum(small * gs));
      opt.step(lrs[step - 1]);
      const auto& s = opt.states()[0];
      const auto state1 = read<std::uint8_t>("big_state1_" + t, 5000), state2 = read<std::uint8_t>("big_state2_" + t, 5000);
      const auto absmax1 = read<float>("big_absmax1_" + t, 20), absmax2 = read<float>("big_absmax2_" + t, 20);
      int byte_diffs = 0;
      for (index_t i = 0; i < 5000; ++i)
        byte_diffs += (s.state1(i) != state1[static_cast<std::size_t>(i)]) + (s.state2(i) != state2[static_cast<std::size_t>(i)]);
      CHECK(byte_diffs == 0);
      for (index_t b = 0; b < 20; ++b) {
        CHECK(s.absmax1(b) == absmax1[static_cast<std::size_t>(b)]);
        CHECK(s.absmax2(b) == absmax2[static_cast<std::size_t>(b)]);
      }
      // a weight agrees when it is within 1 ulp, or within 1e-9 where an update nearly cancelled it
      int disagreeing = 0, off_by_one_ulp = 0;
      const auto want_big = read<float>("big_param_" + t, 5000);
      for (index_t i = 0; i < 5000; ++i) {
        const float ours = big.value()(i), theirs = want_big[static_cast<std::size_t>(i)];
        const std::int64_t u = ulps(ours, theirs);
        off_by_one_ulp += u == 1;
        disagreeing += u > 1 && std::abs(static_cast<double>(ours) - theirs) > 1e-9;
      }
      std::int64_t worst_small = 0;
      const auto want_small = read<float>("small_param_" + t, 300);
      const auto m = read<float>("small_state1_" + t, 300), v = read<float>("small_state2_" + t, 300);
      for (index_t i = 0; i < 300; ++i) {
        worst_small = std::max(worst_small, ulps(small.value()(i), want_small[static_cast<std::size_t>(i)]));
        worst_small = std::max(worst_small, ulps(opt.states()[1].m(i), m[static_cast<std::size_t>(i)]));
        worst_small = std::max(worst_small, ulps(opt.states()[1].v(i), v[static_cast<std::size_t>(i)]));
      }
      MESSAGE("step " << step << ": 8-bit weights: " << 5000 - off_by_one_ulp << " of 5000 identical, " << off_by_one_ulp
                      << " 1 ulp apart; 32-bit path worst " << worst_small << " ulp");
      CHECK(disagreeing == 0);
      CHECK(worst_small == 0);
    }
  }

  TEST_CASE("8-bit states take 2 bytes per element plus 8 bytes per 256") {
    auto big = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::zeros(65536));
    auto small = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::zeros(100));
    AdamW8bit opt({Parameter("big", big), Parameter("small", small)});
    CHECK(opt.state_bytes() == 65536 * 2 + 256 * 8 + 100 * 8);
  }
}
