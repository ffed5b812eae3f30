// RoPE: transformers' Gemma3RotaryEmbedding + apply_rotary_pos_emb for local (theta 1e4) and global (theta 1e6,
// linear factor 8) layers at head_dim 256 with positions restarting mid-sequence (golden: outputs, cos/sin, input
// gradients; fp32 and bf16), rotation properties, an fp64 gradcheck and the argument errors; Gemma 4's sliding RoPE
// and proportional RoPE (head_dim 512, a quarter of the pairs rotate) against Gemma4TextRotaryEmbedding.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "support/golden.hpp"

#include <qlora/ops/rope.hpp>

using namespace qlora;

namespace {
using Pos = Tensor<std::int32_t, Dyn>;
using X = Tensor<float, Dyn, Dyn, Dim<256>>;  // [tokens, heads, head_dim]
using Table = Tensor<float, Dyn, Dim<256>>;   // [tokens, head_dim]

X x_of(const test::GoldenArray<float>& a) { return X::from(a.values, a.shape[0], a.shape[1]); }
Pos positions_of(const test::GoldenSet& golden) {
  const auto p = golden.ints("rope_positions");  // [0..5, 0..2, 0, 1, 4095, 131071]
  return Pos::from(p.values, p.numel());
}
// Tokens 0..11 (positions ≤ 4095) agree to 1e-6. Token 12 sits at position 131071, where one float32 ulp of
// inv_freq (torch's vectorised pow is 1 ulp off the correctly rounded value for one of the 128 frequencies) moves
// the angle by ~4e-6 rad: there the stated tolerance is 2e-5 absolute.
template <class A, class B>
void check_near_and_far(const A& got, const B& want, const std::string& what) {
  const index_t near = 12, tokens = got.size(0);
  QLORA_CHECK_GOLDEN(got.slice(0, near), want.slice(0, near), 1e-6, 1e-6, what + " (positions <= 4095)");
  QLORA_CHECK_GOLDEN(got.slice(near, tokens), want.slice(near, tokens), 2e-5, 0.0, what + " (position 131071)");
}
RopeParams params_of(const test::GoldenSet& golden, const std::string& name) {
  const auto& p = golden.params(name);
  return {p.at("theta").get<double>(), p.at("factor").get<double>()};
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("rope matches transformers' Gemma3 rotary embedding for local and global layers in fp32") {
    const test::GoldenSet golden("gemma3_ops");
    const Pos pos = positions_of(golden);
    const X q = x_of(golden.floats("rope_q"));  // q: [13, 2, 256]
    for (const std::string name : {"rope_local", "rope_global"}) {
      CAPTURE(name);
      const RopeParams p = params_of(golden, name);
      auto qv = Variable<float, Dyn, Dyn, Dim<256>>::leaf(q);
      const auto out = rope(qv, pos, p);
      check_near_and_far(out.value(), x_of(golden.floats(name + "_out")), name + " out");
      backward(out, x_of(golden.floats(name + "_dy")));
      check_near_and_far(qv.grad(), x_of(golden.floats(name + "_dq")), name + " dq");
    }
  }

  TEST_CASE("rope of a unit pair gives transformers' cos and sin tables") {
    const test::GoldenSet golden("gemma3_ops");
    const Pos pos = positions_of(golden);
    const index_t tokens = pos.numel();
    auto ones = Tensor<float, Dyn, Dim<1>, Dim<256>>::zeros(tokens);  // x[i] = 1, x[i + 128] = 0: out = (cos, sin)
    for (index_t t = 0; t < tokens; ++t)
      for (index_t i = 0; i < 128; ++i) ones(t, 0, i) = 1.0f;
    for (const std::string name : {"rope_local", "rope_global"}) {
      const auto out = rope_forward(ones, pos, params_of(golden, name));
      const auto cos = Table::from(golden.floats(name + "_cos").values, tokens);  // [13, 256], cat(freqs, freqs)
      const auto sin = Table::from(golden.floats(name + "_sin").values, tokens);
      auto got_cos = Table::zeros(tokens), got_sin = Table::zeros(tokens);
      for (index_t t = 0; t < tokens; ++t)
        for (index_t i = 0; i < 128; ++i) {
          got_cos(t, i) = got_cos(t, i + 128) = out(t, 0, i);
          got_sin(t, i) = got_sin(t, i + 128) = out(t, 0, i + 128);
        }
      check_near_and_far(got_cos, cos, name + " cos");
      check_near_and_far(got_sin, sin, name + " sin");
    }
  }

  // bf16: cos/sin rounded to bf16, each product and the sum rounded, as torch; a cos/sin 1-ulp fp32 difference
  // (glibc vs torch's SLEEF) can flip a bf16 rounding, so a few outputs may differ by one bf16 ulp.
  TEST_CASE("rope on bf16 rounds cos, sin, the products and the sum like transformers") {
    const test::GoldenSet golden("gemma3_ops");
    const Pos pos = positions_of(golden);
    const auto gq = golden.floats("rope_q");
    auto q = Tensor<bf16, Dyn, Dyn, Dim<256>>::zeros(gq.shape[0], gq.shape[1]);
    for (index_t i = 0; i < q.numel(); ++i) q.data()[i] = bf16(gq.values[static_cast<std::size_t>(i)]);
    for (const std::string name : {"rope_local", "rope_global"}) {
      CAPTURE(name);
      const auto out = rope_forward(q, pos, params_of(golden, name));
      const X want = x_of(golden.floats(name + "_bf16_out"));
      index_t exact = 0;
      for (index_t i = 0; i < out.numel(); ++i) {
        const float got = static_cast<float>(out.data()[i]), ref = want.data()[i];
        exact += got == ref;
        CHECK(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7) + 1e-30f);
      }
      MESSAGE(name, ": ", exact, " of ", out.numel(), " bf16 outputs bit-identical to transformers");
      CHECK(exact >= out.numel() * 99 / 100);
    }
  }

  TEST_CASE("rope at position 0 is the identity and equal positions rotate equally (packed sequences)") {
    using X3 = Tensor<double, Dyn, Dim<2>, Dim<8>>;
    const auto x = test::random_tensor<X3>(1, -1, 1, 4);
    auto same = x.clone();
    same[3].copy_from(x[1]);  // token 3 := token 1
    const auto out = rope_forward(same, Pos::from({0, 5, 2, 5}, 4), RopeParams{10000, 8});
    for (index_t i = 0; i < 16; ++i) {
      CHECK(out.data()[i] == x.data()[i]);
      CHECK(out.data()[3 * 16 + i] == out.data()[1 * 16 + i]);
    }
    for (index_t h = 0; h < 2; ++h)  // each (i, i + 4) pair keeps its length
      for (index_t i = 0; i < 4; ++i)
        CHECK(std::hypot(out(1, h, i), out(1, h, i + 4)) ==
              doctest::Approx(std::hypot(same(1, h, i), same(1, h, i + 4))));
  }

  TEST_CASE("rope gradient passes gradcheck in fp64 (local and linearly scaled)") {
    using X3 = Tensor<double, Dyn, Dim<3>, Dim<8>>;
    auto x = Variable<double, Dyn, Dim<3>, Dim<8>>::leaf(test::random_tensor<X3>(2, -1, 1, 5));
    const Pos pos = Pos::from({0, 1, 2, 0, 7}, 5);
    QLORA_CHECK_GRADIENTS([&](const auto& v) { return rope(v, pos, RopeParams{10000, 1}); }, x);
    QLORA_CHECK_GRADIENTS([&](const auto& v) { return rope(v, pos, RopeParams{1e6, 8}); }, x);
  }

  TEST_CASE("rope rejects an odd head_dim and a position count that differs from the token count") {
    CHECK_THROWS_WITH_AS(rope_forward(Tensor<float, Dyn, Dyn, Dyn>::zeros(2, 1, 7), Pos::from({0, 1}, 2), RopeParams{}),
                         "[rope] head_dim 7 must be even and at most 512", Error);
    CHECK_THROWS_WITH_AS(rope_forward(Tensor<float, Dyn, Dyn, Dyn>::zeros(3, 1, 8), Pos::from({0, 1}, 2), RopeParams{}),
                         "[rope] positions [2] for x [3, 1, 8]: one position per token", Error);
  }

  // Gemma 4: sliding layers rotate every pair of a 256-wide head with θ 1e4; full layers use proportional RoPE on
  // 512-wide heads, θ 1e6, only the first int(0.25 · 512 // 2) = 64 pairs rotating (the exponent still over 512).
  // torch's vectorised pow is 1 ulp off the correctly rounded θ^(2i/D) for one frequency of each table (i = 111 of
  // 128 sliding, i = 29 of 256 full), so: (1) qlora's table is within 1 ulp of torch's, zeros exact; (2) the rotation
  // run on torch's own table equals transformers' to fp32 rounding; (3) the public op differs by no more than that
  // ulp can move an angle at the largest position: |Δθ_i| · pos · (|x_i| + |x_i+D/2|).
  TEST_CASE("rope matches Gemma4TextRotaryEmbedding on sliding (256) and proportional full (512) layers") {
    const test::GoldenSet golden("gemma4_ops");
    const Pos pos = positions_of(golden);
    for (const std::string name : {"rope_sliding", "rope_full"}) {
      CAPTURE(name);
      const auto& gp = golden.params(name);
      const RopeParams p{gp.at("theta").get<double>(), gp.at("factor").get<double>(),
                         gp.at("partial_rotary_factor").get<double>()};
      const index_t d = gp.at("head_dim").get<index_t>(), half = d / 2;
      const auto inv = golden.floats(name + "_inv_freq");
      const auto ours = rope_frequencies<float>(d, p);
      RopeFrequencies<float> theirs;
      theirs.half = half;
      REQUIRE(inv.numel() == half);
      index_t zeros = 0, off_by_one_ulp = 0;
      float max_dfreq = 0;
      for (index_t i = 0; i < half; ++i) {
        const float want = inv.values[static_cast<std::size_t>(i)], got = ours.inv_freq[i];
        theirs.inv_freq[i] = want;
        zeros += got == 0.0f;
        CHECK((got == 0.0f) == (want == 0.0f));
        CHECK((got == want || std::nextafter(got, want) == want));
        off_by_one_ulp += got != want;
        max_dfreq = std::max(max_dfreq, std::abs(got - want));
      }
      MESSAGE(name, ": ", off_by_one_ulp, " of ", half, " inverse frequencies one ulp from torch's");
      CHECK(zeros == (name == "rope_full" ? 192 : 0));

      using XD = Tensor<float, Dyn, Dyn, Dyn>;
      const auto as_x = [](const test::GoldenArray<float>& a) {
        return XD::from(a.values, a.shape[0], a.shape[1], a.shape[2]);
      };
      const XD q = as_x(golden.floats(name + "_q"));  // [13, 2, d]
      const index_t tokens = q.size(0), heads = q.size(1);
      XD out(q.shape()), dq(q.shape());
      cpu::rope_apply(q.data(), pos.data(), theirs, out.data(), tokens, heads, false);
      const XD dy = as_x(golden.floats(name + "_dy"));
      cpu::rope_apply(dy.data(), pos.data(), theirs, dq.data(), tokens, heads, true);
      check_near_and_far(out, as_x(golden.floats(name + "_out")), name + " out (torch's table)");
      check_near_and_far(dq, as_x(golden.floats(name + "_dq")), name + " dq (torch's table)");

      auto qv = Variable<float, Dyn, Dyn, Dyn>::leaf(q);
      const auto y = rope(qv, pos, p);
      backward(y, dy);
      double max_pos = 0, max_x = 0;
      for (index_t t = 0; t < tokens; ++t) max_pos = std::max<double>(max_pos, pos(t));
      for (index_t i = 0; i < q.numel(); ++i) max_x = std::max<double>(max_x, std::abs(q.data()[i]) + std::abs(dy.data()[i]));
      const double bound = 2 * max_dfreq * max_pos * max_x + 2e-5;
      QLORA_CHECK_GOLDEN(y.value(), as_x(golden.floats(name + "_out")), bound, 0.0, name + " out");
      QLORA_CHECK_GOLDEN(qv.grad(), as_x(golden.floats(name + "_dq")), bound, 0.0, name + " dq");
      if (name == "rope_full")  // dims 64..255 and 320..511 pass through bit for bit
        for (index_t t = 0; t < tokens; ++t)
          for (index_t i = 64; i < 256; ++i) {
            CHECK(y.value()(t, 1, i) == q(t, 1, i));
            CHECK(y.value()(t, 1, i + 256) == q(t, 1, i + 256));
          }

      // bf16 on torch's table: cos/sin, products and sum rounded like transformers
      Tensor<bf16, Dyn, Dyn, Dyn> qb(q.shape()), ob(q.shape());
      for (index_t i = 0; i < qb.numel(); ++i) qb.data()[i] = bf16(q.data()[i]);
      cpu::rope_apply(qb.data(), pos.data(), theirs, ob.data(), tokens, heads, false);
      const auto want = golden.floats(name + "_bf16_out");
      index_t exact = 0;
      for (index_t i = 0; i < ob.numel(); ++i) {
        const float got = static_cast<float>(ob.data()[i]), ref = want.values[static_cast<std::size_t>(i)];
        exact += got == ref;
        CHECK(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7) + 1e-30f);
      }
      CHECK(exact >= ob.numel() * 99 / 100);
    }
  }

  TEST_CASE("proportional rope passes gradcheck in fp64 and rejects a fraction outside [0, 1]") {
    using X3 = Tensor<double, Dyn, Dim<2>, Dim<16>>;
    auto x = Variable<double, Dyn, Dim<2>, Dim<16>>::leaf(test::random_tensor<X3>(9, -1, 1, 4));
    const Pos pos = Pos::from({0, 3, 1, 9}, 4);
    QLORA_CHECK_GRADIENTS([&](const auto& v) { return rope(v, pos, RopeParams{1e6, 1, 0.25}); }, x);
    // fraction 0: the identity; 0.25 of 16 dims: pairs 0 and 1 rotate (int(0.25 · 16 // 2) = 2)
    const auto same = rope_forward(x.value(), pos, RopeParams{1e6, 1, 0});
    for (index_t i = 0; i < x.value().numel(); ++i) CHECK(same.data()[i] == x.value().data()[i]);
    const auto f = rope_frequencies<double>(16, RopeParams{1e6, 1, 0.25});
    CHECK(f.inv_freq[1] > 0);
    CHECK(f.inv_freq[2] == 0);
    CHECK_THROWS_WITH_AS(rope_forward(x.value(), pos, RopeParams{1e6, 1, 1.5}),
                         "[rope] rotated fraction (partial_rotary_factor) 1.5 must lie in [0, 1]", Error);
  }
}
