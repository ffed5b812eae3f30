// The 256-entry dynamic 8-bit maps computed by qlora::create_dynamic_map equal bitsandbytes' create_dynamic_map
// (signed and unsigned) bit for bit, as dumped by tests/golden/bnb_quant.py, and have the documented structure.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include <qlora/quant/dynamic_map.hpp>

#include "golden.hpp"

namespace {
std::vector<float> as_vector(const qlora::DynamicMap& m) { return {m.begin(), m.end()}; }
}  // namespace

TEST_SUITE("quant") {
  TEST_CASE("signed dynamic map equals bitsandbytes create_dynamic_map(signed=True) bit for bit") {
    CHECK_BITWISE_EQUAL(as_vector(qlora::create_dynamic_map(true)), golden::table("dynamic_signed"), "signed map");
  }

  TEST_CASE("unsigned dynamic map equals bitsandbytes create_dynamic_map(signed=False) bit for bit") {
    CHECK_BITWISE_EQUAL(as_vector(qlora::create_dynamic_map(false)), golden::table("dynamic_unsigned"),
                        "unsigned map");
  }

  TEST_CASE("signed dynamic map is sorted and symmetric around code 127 = 0, with code 255 = 1") {
    const qlora::DynamicMap code = qlora::create_dynamic_map(true);
    CHECK(std::is_sorted(code.begin(), code.end()));
    CHECK(code[127] == 0.0f);
    CHECK(code[255] == 1.0f);
    CHECK(code[0] > -1.0f);  // -0.99297: the negative half has no -1
    for (int k = 0; k < 127; ++k) CHECK(code[k] == -code[254 - k]);
  }

  TEST_CASE("unsigned dynamic map runs from 0 to 1 with distinct entries") {
    const qlora::DynamicMap code = qlora::create_dynamic_map(false);
    CHECK(code[0] == 0.0f);
    CHECK(code[255] == 1.0f);
    CHECK(std::adjacent_find(code.begin(), code.end(), [](float a, float b) { return !(a < b); }) == code.end());
  }

  TEST_CASE("torch float32 linspace emulation hits both end points exactly") {
    for (int steps : {2, 3, 5, 9, 17, 33, 65, 129}) {
      CHECK(qlora::detail::torch_linspace_f32(0.1f, 1.0f, steps, 0) == 0.1f);
      CHECK(qlora::detail::torch_linspace_f32(0.1f, 1.0f, steps, steps - 1) == 1.0f);
    }
  }
}
