// Shapes: static extents in the type, dynamic ones at run time, and the errors that name both shapes.
#include <doctest/doctest.h>

#include <qlora/core/shape.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("a static shape knows its extents at compile time") {
    constexpr Shape<Dim<2>, Dim<3>> s;
    static_assert(s.numel() == 6 && s.rank == 2 && s.all_static);
    CHECK(s.str() == "[2, 3]");
  }

  TEST_CASE("a mixed shape takes its dynamic extents or all extents") {
    Shape<Dyn, Dim<4>> only_dynamic(7);
    Shape<Dyn, Dim<4>> all(7, 4);
    CHECK(only_dynamic == all);
    CHECK(only_dynamic.numel() == 28);
    static_assert(Shape<Dyn, Dim<4>, Dyn>::dynamic_count == 2);
  }

  TEST_CASE("a static extent given a different value at run time throws naming both") {
    CHECK_THROWS_WITH_AS((Shape<Dyn, Dim<4>>(std::array<index_t, 2>{7, 5})),
                         "[shape] extent 1 is 5 but the type fixes it to 4", Error);
    CHECK_THROWS_AS((Shape<Dyn, Dim<4>>(-1)), Error);
  }

  TEST_CASE("dynamic shapes that differ throw an error naming both shapes") {
    Shape<Dyn, Dim<4>> a(3);
    Shape<Dyn, Dim<4>> b(5);
    CHECK_THROWS_WITH_AS(require_same_shape(a, b, "add", "operands"),
                         "[add] operands: shapes differ: [3, 4] vs [5, 4]", Error);
    CHECK_NOTHROW(require_same_shape(a, Shape<Dim<3>, Dyn>(3, 4), "add", "operands"));
  }

  TEST_CASE("extent compatibility is a compile-time property") {
    static_assert(extents_compatible_v<Dim<3>, Dim<3>>);
    static_assert(!extents_compatible_v<Dim<3>, Dim<4>>);
    static_assert(extents_compatible_v<Dyn, Dim<4>>);
    static_assert(std::is_same_v<merged_extent_t<Dyn, Dim<4>>, Dim<4>>);
  }
}
