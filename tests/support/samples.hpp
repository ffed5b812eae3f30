// Samples for the tests of batching: n tokens, every one learned.
#pragma once

#include <cstddef>
#include <cstdint>

#include <qlora/data/dataset.hpp>

namespace qlora::test {

// A sample of n tokens, all learned: ids (and labels) first, first + 1, ...
inline Sample learned_sample(std::size_t n, std::int32_t first) {
  Sample s;
  for (std::size_t i = 0; i < n; ++i) {
    s.input_ids.push_back(first + static_cast<std::int32_t>(i));
    s.labels.push_back(first + static_cast<std::int32_t>(i));
  }
  return s;
}

}  // namespace qlora::test
