// AdamW: the update rule against an fp64 transcription of torch.optim.AdamW's algorithm, skipping parameters without
// gradients, and zero_grad. (Bit-level parity with torch itself: tests/golden/torch_optim.py when present.)
#include <doctest/doctest.h>

#include <cmath>

#include "support/check.hpp"

#include <qlora/optim/adamw.hpp>

using namespace qlora;

TEST_SUITE("optim") {
  TEST_CASE("AdamW follows torch's algorithm over several steps") {
    const AdamWConfig config{0.9, 0.999, 1e-8, 0.1};
    auto w = Variable<float, Dim<3>>::leaf(Tensor<float, Dim<3>>::from({0.5f, -1.0f, 2.0f}));
    AdamW opt({Parameter("w", w)}, config);
    double p[3] = {0.5, -1.0, 2.0}, m[3] = {}, v[3] = {};
    const double lr = 1e-2;
    for (int t = 1; t <= 5; ++t) {
      // loss = Σ w³ → g = 3 w²
      opt.zero_grad();
      backward(sum(w * square(w)));
      opt.step(lr);
      for (int i = 0; i < 3; ++i) {
        const double g = 3 * p[i] * p[i];
        p[i] *= 1 - lr * config.weight_decay;
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.999 * v[i] + 0.001 * g * g;
        const double step_size = lr / (1 - std::pow(0.9, t));
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) / std::sqrt(1 - std::pow(0.999, t)) + 1e-8);
      }
    }
    for (int i = 0; i < 3; ++i) CHECK(w.value()(i) == doctest::Approx(p[i]).epsilon(1e-6));
    CHECK(opt.states()[0].step == 5);
  }

  TEST_CASE("AdamW skips parameters without a gradient") {
    auto a = Variable<float, Dim<2>>::leaf(Tensor<float, Dim<2>>::from({1, 2}));
    auto b = Variable<float, Dim<2>>::leaf(Tensor<float, Dim<2>>::from({3, 4}));
    AdamW opt({Parameter("a", a), Parameter("b", b)}, {});
    backward(sum(square(a)));
    opt.step(0.1);
    CHECK(a.value()(0) != 1.0f);
    CHECK(b.value()(0) == 3.0f);
    CHECK(opt.states()[1].step == 0);
    opt.zero_grad();
    CHECK_FALSE(a.has_grad());
  }

  TEST_CASE("a parameter that needs no gradient is refused with its name") {
    auto c = Variable<float, Dim<2>>(Tensor<float, Dim<2>>::zeros());
    CHECK_THROWS_WITH_AS(Parameter("lm_head", c), "[optim] parameter 'lm_head' does not require a gradient", Error);
  }
}
