// Tensor<NF4/FP4, Rows, Cols>: quantize/dequantize through the tensor type equals the bitsandbytes-exact functions,
// the byte count, and LoraLinear over a 4-bit base (fp64 gradcheck for x, A, B; output = dense base + adapter).
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/ops/lora.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

using namespace qlora;

namespace {
using W = Tensor<float, Dim<48>, Dim<40>>;  // 1920 values: 30 blocks of 64
}

TEST_SUITE("quant") {
  TEST_CASE("Tensor<NF4> dequantizes to what dequantize_4bit gives for the same codes") {
    const auto w = test::random_tensor<W>(1, -0.2, 0.2);
    for (bool dq : {false, true}) {
      const auto w4 = Tensor<NF4, Dim<48>, Dim<40>>::quantize(w, {64, dq});
      const auto reference = dequantize_4bit(quantize_4bit(w.to_vector(), FourBitType::nf4, 64, dq));
      const auto got = dequantize<float>(w4);
      static_assert(std::is_same_v<decltype(got), const Tensor<float, Dim<48>, Dim<40>>>);
      REQUIRE(got.numel() == static_cast<index_t>(reference.size()));
      for (index_t i = 0; i < got.numel(); ++i) REQUIRE(got.data()[i] == reference[static_cast<std::size_t>(i)]);
      CHECK(w4.state().nested.has_value() == dq);
    }
  }

  TEST_CASE("Tensor<FP4> round-trips within the FP4 grid and dequantizes into bf16 and fp64") {
    const auto w = test::random_tensor<W>(2, -1, 1);
    const auto w4 = Tensor<FP4, Dim<48>, Dim<40>>::quantize(w);
    const auto f = dequantize<float>(w4);
    const auto b = dequantize<bf16>(w4);
    const auto d = dequantize<double>(w4);
    for (index_t i = 0; i < f.numel(); ++i) {
      REQUIRE(std::abs(f.data()[i] - w.data()[i]) <= 0.25f);  // FP4's widest gap is 1/3 of absmax
      REQUIRE(static_cast<float>(b.data()[i]) == static_cast<float>(bf16(f.data()[i])));
      REQUIRE(d.data()[i] == static_cast<double>(f.data()[i]));
    }
  }

  TEST_CASE("a 4-bit tensor reports its honest byte count") {
    const auto w = test::random_tensor<Tensor<float, Dim<256>, Dim<256>>>(3, -1, 1);
    const auto dq = Tensor<NF4, Dim<256>, Dim<256>>::quantize(w, {64, true});
    const auto plain = Tensor<NF4, Dim<256>, Dim<256>>::quantize(w, {64, false});
    // 65536 values: 32768 packed bytes; 1024 blocks -> 1024 code bytes + 4 nested absmax * 4 + offset 4
    CHECK(dq.storage_bytes() == 32768 + 1024 + 16 + 4);
    CHECK(plain.storage_bytes() == 32768 + 4096);
    CHECK(plain.bytes_per_parameter() == doctest::Approx(0.5625));
    CHECK(dq.bytes_per_parameter() == doctest::Approx((32768.0 + 1044.0) / 65536.0));
  }

  TEST_CASE("LoRA over an NF4 base equals the dense dequantized base plus the adapter") {
    using B4 = Tensor<NF4, Dim<48>, Dim<40>>;
    const auto w4 = B4::quantize(test::random_tensor<W>(4, -0.3, 0.3));
    LoraLinear<float, B4> layer(w4, LoraSpec{4, 8, 0, false}, RandomStream{1, 0});
    layer.lora_b().value().copy_from(test::random_tensor<Tensor<float, Dim<48>, Dim<4>>>(5, -0.1, 0.1));
    const auto x = test::random_tensor<Tensor<float, Dyn, Dim<40>>>(6, -1, 1, 7);
    const auto y = layer(Variable<float, Dyn, Dim<40>>(x)).value();
    const auto dense = dequantize<float>(w4);
    const auto base = matmul<Transpose::no, Transpose::yes>(x, dense);
    const auto low = matmul<Transpose::no, Transpose::yes>(x, layer.lora_a().value());
    const auto update = matmul<Transpose::no, Transpose::yes>(low, layer.lora_b().value());
    const auto want = evaluate<float, Dyn, Dim<48>>(base + update * 2.0f);
    QLORA_CHECK_CLOSE(y, want, 1e-6, 1e-5);
  }

  TEST_CASE("LoRA over an NF4 base passes gradcheck for x, A and B with and without dropout") {
    using B4 = Tensor<NF4, Dim<6>, Dim<64>>;  // one block per output row
    const auto w4 = B4::quantize(test::random_tensor<Tensor<float, Dim<6>, Dim<64>>>(7, -1, 1));
    for (float p : {0.0f, 0.2f}) {
      LoraLinear<double, B4> layer(w4, LoraSpec{2, 4, p, false}, RandomStream{2, 0});
      layer.lora_b().value().copy_from(test::random_tensor<Tensor<double, Dim<6>, Dim<2>>>(8, -1, 1));
      auto x = Variable<double, Dyn, Dim<64>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<64>>>(9, -1, 1, 3));
      QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&) { return layer(in, RandomStream{3, 4}); }, x,
                            layer.lora_a(), layer.lora_b());
    }
  }
}
