// Tensors: owning storage, views along the first axis, reshape, copies, printing and memory accounting.
#include <doctest/doctest.h>

#include <sstream>

#include <qlora/core/tensor.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("a new tensor is zero-filled and row-major") {
    auto t = Tensor<float, Dim<2>, Dim<3>>::zeros();
    CHECK(t.numel() == 6);
    CHECK(t.bytes() == 24);
    for (index_t i = 0; i < 6; ++i) CHECK(t.data()[i] == 0.0f);
    t(1, 2) = 5.0f;
    CHECK(t.data()[5] == 5.0f);
  }

  TEST_CASE("from() checks the number of values") {
    auto t = Tensor<int32_t, Dyn, Dim<2>>::from({1, 2, 3, 4, 5, 6}, 3);
    CHECK(t(2, 1) == 6);
    CHECK_THROWS_WITH_AS((Tensor<int32_t, Dyn, Dim<2>>::from({1, 2, 3}, 2)),
                         "[tensor] from(): 3 values for shape [2, 2] (4 elements)", Error);
  }

  TEST_CASE("indexing the first axis gives a view that shares storage") {
    auto t = Tensor<float, Dyn, Dim<3>>::from({0, 1, 2, 3, 4, 5}, 2);
    auto row = t[1];
    static_assert(std::is_same_v<decltype(row), Tensor<float, Dim<3>>>);
    CHECK(row(0) == 3.0f);
    row(0) = 30.0f;
    CHECK(t(1, 0) == 30.0f);
    CHECK_THROWS_AS(t[2], Error);
  }

  TEST_CASE("slices along the first axis are views with a dynamic first extent") {
    auto t = Tensor<float, Dim<4>, Dim<2>>::from({0, 1, 2, 3, 4, 5, 6, 7});
    auto s = t.slice(1, 3);
    static_assert(std::is_same_v<decltype(s), Tensor<float, Dyn, Dim<2>>>);
    CHECK(s.size(0) == 2);
    CHECK(s(0, 0) == 2.0f);
    s(1, 1) = -1.0f;
    CHECK(t(2, 1) == -1.0f);
    CHECK_THROWS_AS(t.slice(3, 5), Error);
  }

  TEST_CASE("reshape keeps the elements and checks the count") {
    auto t = Tensor<float, Dim<2>, Dim<6>>::zeros();
    auto r = t.reshape<Dim<3>, Dim<4>>();
    r(2, 3) = 1.0f;
    CHECK(t(1, 5) == 1.0f);
    CHECK_THROWS_AS((t.reshape<Dyn, Dim<5>>(2)), Error);
  }

  TEST_CASE("a static tensor converts to a dynamic view, and as<> checks the other way") {
    auto t = Tensor<float, Dim<2>, Dim<3>>::zeros();
    Tensor<float, Dyn, Dyn> d = t;
    CHECK(d.data() == t.data());
    CHECK_NOTHROW(d.as<Dim<2>, Dyn>());
    CHECK_THROWS_AS((d.as<Dim<5>, Dyn>()), Error);
  }

  TEST_CASE("clone copies the data while copies of the handle share it") {
    auto t = Tensor<double, Dim<3>>::full(2.0);
    auto shared = t;
    auto copy = t.clone();
    t(0) = 7.0;
    CHECK(shared(0) == 7.0);
    CHECK(copy(0) == 2.0);
  }

  TEST_CASE("printing shows the type, shape, device and values") {
    auto t = Tensor<float, Dim<2>, Dim<2>>::from({1, 2, 3, 4});
    std::ostringstream os;
    os << t;
    CHECK(os.str() == "Tensor<f32>[2, 2] cpu\n  [1, 2]\n  [3, 4]");
    std::ostringstream undefined;
    undefined << Tensor<float, Dyn>();
    CHECK(undefined.str() == "Tensor<f32>[0] cpu (undefined)");
  }

  TEST_CASE("the CPU allocator reports current and peak bytes") {
    Allocator& a = cpu_allocator();
    const std::size_t before = a.stats().current_bytes;
    a.reset_peak();
    {
      auto big = Tensor<float, Dyn>::zeros(1 << 20);  // 4 MiB
      CHECK(a.stats().current_bytes == before + (4u << 20));
    }
    CHECK(a.stats().current_bytes == before);
    CHECK(a.stats().peak_bytes >= before + (4u << 20));
  }

  TEST_CASE("the CPU allocator hands a freed large block back for the same size and counts it as reserved") {
    CpuAllocator& a = cpu_allocator();
    const std::size_t bytes = 3u << 20;  // 3 MiB: cached on free
    void* first = a.allocate(bytes);
    const std::size_t live = a.stats().current_bytes;
    a.deallocate(first, bytes);
    CHECK(a.stats().current_bytes == live - bytes);
    CHECK(a.cached_bytes() >= bytes);
    CHECK(a.stats().reserved_bytes >= a.stats().current_bytes + bytes);
    void* again = a.allocate(bytes);
    CHECK(again == first);
    a.deallocate(again, bytes);
    a.release_cached();
    CHECK(a.cached_bytes() == 0);
    CHECK(a.stats().reserved_bytes == a.stats().current_bytes);
    void* small = a.allocate(1000);  // below the cached size: straight from and back to malloc
    a.deallocate(small, 1000);
    CHECK(a.cached_bytes() == 0);
  }

  TEST_CASE("rank-0 tensors hold one value") {
    Tensor<float> s(Shape<>{});
    CHECK(s.numel() == 1);
    s() = 3.5f;
    CHECK(s.item() == 3.5f);
  }
}
