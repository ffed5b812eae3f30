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

namespace detail {
inline constexpr std::uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;   // round multipliers
inline constexpr std::uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;  // key schedule increments

// One round on the words c0..c3 of one counter: the 32 × 32 → 64 products of c0 and c2 with the multipliers, their
// high words mixed with c1, c3 and the key, their low words carried over.
QLORA_HD inline void philox_round(std::uint32_t& c0, std::uint32_t& c1, std::uint32_t& c2, std::uint32_t& c3,
                                  std::uint32_t key0, std::uint32_t key1) {
  const std::uint64_t p0 = std::uint64_t{kPhiloxMul0} * c0, p1 = std::uint64_t{kPhiloxMul1} * c2;
  const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ key0;
  const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ key1;
  c0 = n0;
  c1 = static_cast<std::uint32_t>(p1);
  c2 = n2;
  c3 = static_cast<std::uint32_t>(p0);
}

// The ten rounds on L counters at once, in place: c[w][j] is word w of counter j. Each round runs over the counters
// in a plain loop that compilers vectorise for the target at hand: the widening products become pmuludq on SSE2 and
// AVX2, vpmullq on AVX-512, umull/umull2 on NEON. No vector types and no intrinsics, so nothing here depends on the
// build machine's ISA.
template <int L>
QLORA_HD inline void philox_rounds(std::uint32_t (&c)[4][L], std::uint32_t key0, std::uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    for (int j = 0; j < L; ++j) philox_round(c[0][j], c[1][j], c[2][j], c[3][j], key0, key1);
    key0 += kPhiloxWeyl0;
    key1 += kPhiloxWeyl1;
  }
}
}  // namespace detail

QLORA_HD inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t key0, std::uint32_t key1) {
  std::uint32_t c[4][1] = {{counter.v[0]}, {counter.v[1]}, {counter.v[2]}, {counter.v[3]}};
  detail::philox_rounds(c, key0, key1);
  return {{c[0][0], c[1][0], c[2][0], c[3][0]}};
}

// 16 counters at once (16 lanes = 4 SSE/NEON, 2 AVX2 or 1 AVX-512 register per word), for the CPU dropout loop.
inline void philox4x32_10_lanes(std::uint32_t (&c)[4][16], std::uint32_t key0, std::uint32_t key1) {
  detail::philox_rounds(c, key0, key1);
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
