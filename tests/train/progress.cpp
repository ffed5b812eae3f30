// The run's memory figures and its step line (train/progress.hpp).
#include <doctest/doctest.h>

#include <vector>

#include <qlora/train/progress.hpp>

using namespace qlora;

TEST_SUITE("train") {
  TEST_CASE("process memory: the resident set, which a large allocation raises, and a peak never below it") {
    const MemoryUse before = process_memory();
    REQUIRE(before.peak_bytes > 0);
    std::vector<char> block(256u << 20, 1);  // 256 MiB, touched
    const MemoryUse after = process_memory();
    CHECK(block[block.size() / 2] == 1);
    CHECK(after.peak_bytes >= before.peak_bytes);  // a high-water mark (earlier tests may have set it higher)
#ifdef __linux__
    CHECK(after.current_bytes >= before.current_bytes + (200u << 20));
    CHECK(after.peak_bytes >= after.current_bytes);
#else
    CHECK(after.peak_bytes >= (200u << 20));
#endif
  }

  TEST_CASE("the memory figures as the step line shows them") {
    constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
    CHECK(describe(MemoryUse{1.5 * GiB, 2.25 * GiB}) == "mem 1.50 GiB (peak 2.25)");
    CHECK(describe(MemoryUse{0, 2.25 * GiB}) == "peak mem 2.25 GiB");
  }
}
