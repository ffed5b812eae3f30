// LoraLinear over dense bases: PEFT's initialisation and scaling, the base is never trained, fp64 gradchecks for x,
// A and B with and without dropout. (The 4-bit base is tested in tests/quant/lora_nf4.cpp.)
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/ops/lora.hpp>

using namespace qlora;

namespace {
using W = Tensor<double, Dim<5>, Dim<4>>;  // base: [out 5, in 4]

template <class Layer>
void randomise_b(const Layer& layer, std::uint64_t seed) {  // B = 0 at init would hide A's gradient
  const auto b = test::random_tensor<Tensor<double, Dim<5>, Dyn>>(seed, -1, 1, layer.rank());
  layer.lora_b().value().copy_from(b);
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("a new LoRA layer equals its base: B starts at zero, A is U(-1/sqrt(in), 1/sqrt(in))") {
    const auto w = test::random_tensor<Tensor<float, Dim<64>, Dim<256>>>(1, -1, 1);
    LoraLinear<float, Tensor<float, Dim<64>, Dim<256>>> layer(w, LoraSpec{8, 16, 0, false}, RandomStream{7, 0});
    const auto a = layer.lora_a().value();
    double lo = 1, hi = -1, sum = 0;
    for (index_t i = 0; i < a.numel(); ++i) {
      lo = std::min<double>(lo, a.data()[i]);
      hi = std::max<double>(hi, a.data()[i]);
      sum += a.data()[i];
    }
    CHECK(lo >= -1.0 / 16);
    CHECK(hi <= 1.0 / 16);
    CHECK(hi > 0.9 / 16);  // the whole range is used
    CHECK(std::abs(sum / static_cast<double>(a.numel())) < 0.01);
    for (index_t i = 0; i < layer.lora_b().numel(); ++i) REQUIRE(layer.lora_b().value().data()[i] == 0.0f);
    auto x = Variable<float, Dyn, Dim<256>>(test::random_tensor<Tensor<float, Dyn, Dim<256>>>(2, -1, 1, 3));
    const auto base_only = matmul<Transpose::no, Transpose::yes>(x.value(), w);
    QLORA_CHECK_CLOSE(layer(x).value(), base_only, 0.0, 0.0);
  }

  TEST_CASE("LoRA scaling is alpha / r, or alpha / sqrt(r) with rsLoRA") {
    const auto w = Tensor<float, Dim<4>, Dim<4>>::zeros();
    LoraLinear<float, Tensor<float, Dim<4>, Dim<4>>> plain(w, LoraSpec{16, 32, 0, false}, RandomStream{});
    LoraLinear<float, Tensor<float, Dim<4>, Dim<4>>> rs(w, LoraSpec{16, 32, 0, true}, RandomStream{});
    CHECK(plain.scaling() == 2.0);
    CHECK(rs.scaling() == 8.0);
  }

  TEST_CASE("LoRA output is base + s · x·Aᵀ·Bᵀ") {
    const auto w = test::random_tensor<W>(3, -1, 1);
    LoraLinear<double, W> layer(w, LoraSpec{3, 6, 0, false}, RandomStream{1, 0});
    randomise_b(layer, 4);
    const auto x = test::random_tensor<Tensor<double, Dyn, Dim<4>>>(5, -1, 1, 2);
    const auto y = layer(Variable<double, Dyn, Dim<4>>(x)).value();
    const auto want_low = matmul<Transpose::no, Transpose::yes>(x, layer.lora_a().value());
    const auto want_update = matmul<Transpose::no, Transpose::yes>(want_low, layer.lora_b().value());
    const auto want_base = matmul<Transpose::no, Transpose::yes>(x, w);
    const auto want = evaluate<double, Dyn, Dim<5>>(want_base + want_update * 2.0);
    QLORA_CHECK_CLOSE(y, want, 1e-14, 1e-14);
  }

  TEST_CASE("LoRA over an fp64 base passes gradcheck for x, A and B and never trains the base") {
    const auto w = test::random_tensor<W>(6, -1, 1);
    LoraLinear<double, W> layer(w, LoraSpec{3, 6, 0, false}, RandomStream{2, 0});
    randomise_b(layer, 7);
    auto x = Variable<double, Dyn, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<4>>>(8, -1, 1, 3));
    QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in); }, x, layer.lora_a(),
                          layer.lora_b());
  }

  TEST_CASE("LoRA with dropout (fixed seed) passes gradcheck") {
    const auto w = test::random_tensor<W>(9, -1, 1);
    LoraLinear<double, W> layer(w, LoraSpec{3, 6, 0.3, false}, RandomStream{3, 0});
    randomise_b(layer, 10);
    auto x = Variable<double, Dyn, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<4>>>(11, -1, 1, 6));
    QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in, RandomStream{5, 9}); }, x,
                          layer.lora_a(), layer.lora_b());
  }

  TEST_CASE("LoRA over a bf16 base passes gradcheck (the base converted to the compute type)") {
    using B16 = Tensor<bf16, Dim<5>, Dim<4>>;
    const auto w = test::random_tensor<B16>(12, -1, 1);
    LoraLinear<double, B16> layer(w, LoraSpec{3, 3, 0.1, true}, RandomStream{4, 0});
    layer.lora_b().value().copy_from(test::random_tensor<Tensor<double, Dim<5>, Dim<3>>>(13, -1, 1));
    auto x = Variable<double, Dyn, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<4>>>(14, -1, 1, 2));
    QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in, RandomStream{1, 1}); }, x,
                          layer.lora_a(), layer.lora_b());
  }

  TEST_CASE("LoRA over an fp32 base passes gradcheck (the base widened to fp64)") {
    using F32 = Tensor<float, Dim<5>, Dim<4>>;
    const auto w = test::random_tensor<F32>(15, -1, 1);
    LoraLinear<double, F32> layer(w, LoraSpec{3, 3, 0.25, false}, RandomStream{5, 0});
    layer.lora_b().value().copy_from(test::random_tensor<Tensor<double, Dim<5>, Dim<3>>>(16, -1, 1));
    auto x = Variable<double, Dyn, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<4>>>(17, -1, 1, 4));
    QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in, RandomStream{2, 2}); }, x,
                          layer.lora_a(), layer.lora_b());
  }

  TEST_CASE("any rank is a run-time value: r 1 and r 256 pass gradcheck on the same layer type") {
    for (const index_t r : {index_t{1}, index_t{256}}) {
      CAPTURE(r);
      const auto w = test::random_tensor<W>(20, -1, 1);
      LoraLinear<double, W> layer(w, LoraSpec{r, 16, 0, true}, RandomStream{21, 0});
      CHECK(layer.rank() == r);
      CHECK(layer.lora_a().value().size(0) == r);
      CHECK(layer.lora_b().value().size(1) == r);
      randomise_b(layer, 22);
      auto x = Variable<double, Dyn, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<4>>>(23, -1, 1, 2));
      QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in); }, x, layer.lora_a(),
                            layer.lora_b());
    }
  }

  TEST_CASE("given adapter matrices must fit the rank and the base, or the error names both shapes") {
    const auto w = test::random_tensor<W>(24, -1, 1);  // [5, 4]
    const auto a = Tensor<double, Dyn, Dim<4>>::zeros(3);
    const auto b = Tensor<double, Dim<5>, Dyn>::zeros(2);
    CHECK_THROWS_WITH_AS((LoraLinear<double, W>(w, LoraSpec{3, 6, 0, false}, a, b)),
                         doctest::Contains("adapter matrices A [3, 4] and B [5, 2] do not fit rank 3"), Error);
    CHECK_THROWS_WITH_AS((LoraLinear<double, W>(w, LoraSpec{0, 6, 0, false}, RandomStream{})),
                         doctest::Contains("the rank must be >= 1, got 0"), Error);
  }

  TEST_CASE("lora_dropout outside the unit interval is an error") {
    CHECK_THROWS_WITH_AS((LoraLinear<float, Tensor<float, Dim<4>, Dim<4>>>(Tensor<float, Dim<4>, Dim<4>>::zeros(),
                                                                              LoraSpec{2, 1, 1.5, false}, RandomStream{})),
                         "[lora] lora_dropout must be in [0, 1), got 1.5", Error);
  }
}
