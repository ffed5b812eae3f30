// Shared test helpers: random tensors, closeness with the worst element named, and the gradient check that every op
// test uses (it prints the worst element either way, so a log shows how close each op is).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <qlora/qlora.hpp>

namespace qlora::test {

// A CPU tensor of the given type filled with uniform values in [lo, hi), reproducible from `seed`.
template <class TensorType, class... Ns>
TensorType random_tensor(std::uint64_t seed, double lo, double hi, Ns... extents) {
  auto t = TensorType::zeros(extents...);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = convert<typename TensorType::value_type>(u(rng));
  return t;
}

struct Closeness {
  double max_abs = 0;
  index_t worst = -1;
  bool ok = true;
};

// |a - b| <= atol + rtol |b| elementwise (both read on the host); reports the worst element.
template <class A, class B>
Closeness compare(const A& a, const B& b, double atol, double rtol) {
  Closeness c;
  REQUIRE(a.numel() == b.numel());
  const auto va = a.to_vector();
  const auto vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) {
    const double x = convert<double>(va[i]), y = convert<double>(vb[i]);
    const double err = std::abs(x - y);
    if (!(err <= atol + rtol * std::abs(y))) c.ok = false;
    if (err > c.max_abs || std::isnan(err)) {
      c.max_abs = err;
      c.worst = static_cast<index_t>(i);
    }
  }
  return c;
}

#define QLORA_CHECK_CLOSE(a, b, atol, rtol)                                                          \
  do {                                                                                               \
    const auto closeness_ = ::qlora::test::compare((a), (b), (atol), (rtol));                        \
    INFO("max abs error " << closeness_.max_abs << " at element " << closeness_.worst);              \
    CHECK(closeness_.ok);                                                                            \
  } while (0)

// gradcheck with the report printed (MESSAGE) and asserted.
#define QLORA_CHECK_GRADIENTS(...)                                  \
  do {                                                              \
    const auto report_ = ::qlora::gradcheck(__VA_ARGS__);           \
    MESSAGE(report_.str());                                         \
    CHECK(report_.passed);                                          \
  } while (0)

}  // namespace qlora::test
