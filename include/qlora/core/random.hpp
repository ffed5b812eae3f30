// Counter-based random numbers (Philox4x32-10, Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11;
// the generator of cuRAND and of PyTorch's CUDA dropout). The value for element i depends only on (seed, offset, i),
// so the CPU and the GPU draw the same numbers in any order, and a dropout mask never needs to be stored: backward
// regenerates it. `offset` separates the draws of different steps/layers under one seed.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace qlora {

struct Philox4x32 {
  std::uint32_t v[4];
};

QLORA_HD inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;      // round multipliers
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;    // key schedule increments
  std::uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kMul0} * c0;
    const std::uint64_t p1 = std::uint64_t{kMul1} * c2;
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ key0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ key1;
    c3 = lo0;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// N counters at once, in place: c[w][j] is word w of counter j. The same rounds as philox4x32_10, written lane by
// lane so the compiler vectorises them (the CPU dropout loop; 16 lanes fill an AVX-512 register).
template <int N>
inline void philox4x32_10_lanes(std::uint32_t (&c)[4][N], std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    for (int j = 0; j < N; ++j) {
      const std::uint64_t p0 = std::uint64_t{kMul0} * c[0][j];
      const std::uint64_t p1 = std::uint64_t{kMul1} * c[2][j];
      const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      c[0][j] = hi1 ^ c[1][j] ^ key0;
      c[1][j] = lo1;
      c[2][j] = hi0 ^ c[3][j] ^ key1;
      c[3][j] = lo0;
    }
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
}

// Where a stream of random numbers starts: the seed (the key) and an offset (the high half of the counter).
struct RandomStream {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
};

// Uniform float in [0, 1) for element `index` of `stream` (24 random bits, exact in float).
QLORA_HD inline float uniform01(RandomStream stream, std::uint64_t index) {
  const Philox4x32 counter{{static_cast<std::uint32_t>(index / 4), static_cast<std::uint32_t>(index / 4 >> 32),
                            static_cast<std::uint32_t>(stream.offset), static_cast<std::uint32_t>(stream.offset >> 32)}};
  const Philox4x32 r = philox4x32_10(counter, static_cast<std::uint32_t>(stream.seed),
                                     static_cast<std::uint32_t>(stream.seed >> 32));
  return static_cast<float>(r.v[index % 4] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace qlora
