// Extents known at compile time (`Dim<N>`) or only at run time (`Dyn`), composed into `Shape<Dims...>`.
//
// Two shapes are compatible when every pair of extents is equal. Where both extents of a pair are static a mismatch is
// a compile error (`static_assert` in `check_compatible`); otherwise it is checked at run time and throws qlora::Error
// naming both shapes, e.g. "[matmul] inner extents differ: a is [3, 4], b is [5, 2]".
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"

namespace qlora {

// A runtime extent (sequence length, batch, token count).
struct Dyn {
  static constexpr bool is_static = false;
  static constexpr index_t value = -1;
};
// A compile-time extent (hidden size, heads, rank, vocabulary).
template <index_t N>
struct Dim {
  static_assert(N >= 0, "a static extent must not be negative");
  static constexpr bool is_static = true;
  static constexpr index_t value = N;
};

template <class D>
inline constexpr bool is_extent_v = false;
template <>
inline constexpr bool is_extent_v<Dyn> = true;
template <index_t N>
inline constexpr bool is_extent_v<Dim<N>> = true;

// Two extents can describe the same axis unless both are static and differ.
template <class A, class B>
inline constexpr bool extents_compatible_v = !(A::is_static && B::is_static) || A::value == B::value;

// The more informative of two compatible extents (static wins over Dyn).
template <class A, class B>
using merged_extent_t = std::conditional_t<A::is_static, A, B>;

template <class... Ds>
class Shape {
  static_assert((is_extent_v<Ds> && ...), "Shape<...> takes Dim<N> and Dyn extents only");

 public:
  static constexpr int rank = sizeof...(Ds);
  static constexpr int dynamic_count = ((Ds::is_static ? 0 : 1) + ... + 0);
  static constexpr bool all_static = dynamic_count == 0;
  static constexpr std::array<index_t, rank> static_extents = {Ds::value...};

  // All-static shapes need no arguments.
  constexpr Shape() requires all_static : extents_{Ds::value...} {}

  // Either every extent (static ones must match their type) or only the dynamic ones, in order.
  template <class... Ns>
    requires(sizeof...(Ns) > 0 && (std::is_integral_v<Ns> && ...) &&
             (sizeof...(Ns) == rank || sizeof...(Ns) == dynamic_count))
  constexpr explicit Shape(Ns... ns) {
    const std::array<index_t, sizeof...(Ns)> given = {static_cast<index_t>(ns)...};
    if constexpr (sizeof...(Ns) == rank) {
      assign_all(given);
    } else {
      std::size_t next = 0;
      for (int i = 0; i < rank; ++i) extents_[i] = static_extents[i] >= 0 ? static_extents[i] : given[next++];
      check_non_negative();
    }
  }
  explicit Shape(const std::array<index_t, rank>& all) { assign_all(all); }

  constexpr index_t operator[](int axis) const { return extents_[axis]; }
  constexpr const std::array<index_t, rank>& extents() const { return extents_; }
  constexpr index_t numel() const {
    index_t n = 1;
    for (index_t e : extents_) n *= e;
    return n;
  }
  friend bool operator==(const Shape& a, const Shape& b) { return a.extents_ == b.extents_; }

  std::string str() const {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << extents_[i];
    os << ']';
    return os.str();
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  template <std::size_t N>
  void assign_all(const std::array<index_t, N>& all) {
    for (int i = 0; i < rank; ++i) {
      if (static_extents[i] >= 0 && all[i] != static_extents[i])
        fail("shape", "extent ", i, " is ", all[i], " but the type fixes it to ", static_extents[i]);
      extents_[i] = all[i];
    }
    check_non_negative();
  }
  void check_non_negative() const {
    for (int i = 0; i < rank; ++i)
      if (extents_[i] < 0) fail("shape", "extent ", i, " is negative (", extents_[i], ")");
  }
  std::array<index_t, rank> extents_{};
};

// The extent type at position I of a pack.
template <std::size_t I, class... Ds>
using extent_at_t = std::tuple_element_t<I, std::tuple<Ds...>>;

// Compile-time half of the compatibility check: both shapes have the same rank and no two static extents differ.
template <class... As, class... Bs>
constexpr void check_compatible(const Shape<As...>&, const Shape<Bs...>&) {
  static_assert(sizeof...(As) == sizeof...(Bs), "qlora: shapes of different rank");
  static_assert((extents_compatible_v<As, Bs> && ...), "qlora: static extents differ");
}

// Both halves: static mismatch fails to compile, dynamic mismatch throws naming both shapes.
template <class... As, class... Bs>
void require_same_shape(const Shape<As...>& a, const Shape<Bs...>& b, const char* component, const char* what) {
  check_compatible(a, b);
  for (int i = 0; i < static_cast<int>(sizeof...(As)); ++i)
    if (a[i] != b[i]) fail(component, what, ": shapes differ: ", a.str(), " vs ", b.str());
}

// Shape from a std::array of extents, with the dims given as types.
template <class... Ds>
Shape<Ds...> make_shape(const std::array<index_t, sizeof...(Ds)>& extents) {
  return Shape<Ds...>(extents);
}

}  // namespace qlora
