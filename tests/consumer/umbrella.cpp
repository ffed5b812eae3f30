// The core umbrella on its own (main.cpp includes the whole library through qlora/gemma.hpp): each must compile
// first in a translation unit, under the consumer's -Wall -Wextra -Werror.
#include <qlora/qlora.hpp>

namespace consumer {
// A dropout mask drawn with the vectorised Philox lanes: the kind of code whose vector width once leaked the build
// machine's ISA into the calling convention.
float kept_fraction() {
  std::uint32_t counters[4][16] = {};
  for (int j = 0; j < 16; ++j) counters[0][j] = static_cast<std::uint32_t>(j);
  qlora::philox4x32_10_lanes(counters, 7, 0);
  int kept = 0;
  for (int j = 0; j < 16; ++j) kept += (counters[0][j] >> 8) * (1.0f / 16777216.0f) >= 0.1f;
  return static_cast<float>(kept) / 16.0f;
}
}  // namespace consumer
