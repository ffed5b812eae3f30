// core/vector_math.hpp: the vectorised tanh gives the correctly rounded float tanh (double tanh rounded once) on a
// dense sweep, at the clamps, on tiny, signed-zero and NaN inputs, and for every tail length of a block; the
// vectorised exp is within 1.5 ulp of exp in double over float's whole normal range, and overflows, underflows and
// keeps NaN as documented.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <qlora/core/vector_math.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("tanh_n is the correctly rounded tanh of every float on a sweep") {
    std::vector<float> x;
    for (float v = -25.0f; v < 25.0f; v += 1.0f / 4096) x.push_back(v);
    for (int e = -149; e < 5; ++e) {
      x.push_back(std::ldexp(1.0f, e));
      x.push_back(-std::ldexp(1.3f, e));
    }
    x.push_back(0.0f);
    x.push_back(-0.0f);
    x.push_back(std::numeric_limits<float>::max());
    x.push_back(-std::numeric_limits<float>::infinity());
    std::vector<float> y(x.size());
    cpu::tanh_n(x.data(), y.data(), static_cast<index_t>(x.size()));
    index_t wrong = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float want = static_cast<float>(std::tanh(static_cast<double>(x[i])));
      if (y[i] != want && wrong++ < 5) MESSAGE("tanh(", x[i], ") = ", y[i], ", want ", want);
    }
    CHECK(wrong == 0);
    CHECK(std::signbit(y[x.size() - 3]));  // tanh(−0) = −0
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float z = nan;
    cpu::tanh_n(&z, &z, 1);
    CHECK(std::isnan(z));
  }

  TEST_CASE("tanh_n works in place and on every length, and is std::tanh for double") {
    for (index_t n : {0, 1, 15, 255, 256, 257, 1000}) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 0.01f * static_cast<float>(i) - 3.0f;
      const std::vector<float> x = v;
      cpu::tanh_n(v.data(), v.data(), n);
      for (index_t i = 0; i < n; ++i)
        CHECK(v[static_cast<std::size_t>(i)] == static_cast<float>(std::tanh(static_cast<double>(x[static_cast<std::size_t>(i)]))));
    }
    const double d[3] = {-1.5, 0.25, 7.0};
    double out[3];
    cpu::tanh_n(d, out, 3);
    for (int i = 0; i < 3; ++i) CHECK(out[i] == std::tanh(d[i]));
  }

  TEST_CASE("exp_n is within 1.5 ulp of the exact exp over the normal range, with +inf above and 0 below it") {
    std::vector<float> x;
    for (float v = -87.0f; v < 88.7f; v += 1.0f / 1024) x.push_back(v);
    for (int e = -40; e < 0; ++e) x.push_back(std::ldexp(1.0f, e));
    std::vector<float> y(x.size());
    cpu::exp_n(x.data(), y.data(), static_cast<index_t>(x.size()));
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x[i]));
      const float wf = static_cast<float>(want);
      const double ulp = static_cast<double>(std::nextafter(wf, INFINITY)) - static_cast<double>(wf);
      worst = std::max(worst, std::abs(static_cast<double>(y[i]) - want) / ulp);
    }
    MESSAGE("exp_n: worst error ", worst, " ulp over ", x.size(), " inputs");
    CHECK(worst <= 1.5);
    float edge[6] = {88.8f, 1000.0f, INFINITY, -87.4f, -INFINITY, std::numeric_limits<float>::quiet_NaN()};
    cpu::exp_n(edge, edge, 6);
    CHECK(std::isinf(edge[0]));
    CHECK(std::isinf(edge[1]));
    CHECK(std::isinf(edge[2]));
    CHECK(edge[3] == 0.0f);
    CHECK(edge[4] == 0.0f);
    CHECK(std::isnan(edge[5]));
    const double d[2] = {-3.5, 2.0};
    double out[2];
    cpu::exp_n(d, out, 2);
    CHECK(out[0] == std::exp(-3.5));
    CHECK(out[1] == std::exp(2.0));
  }
}
