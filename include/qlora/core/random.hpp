// Counter-based random numbers (Philox4x32-10, Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11;
// the generator of cuRAND and of PyTorch's CUDA dropout). The value for element i depends only on (seed, offset, i),
// so the CPU and the GPU draw the same numbers in any order, and a dropout mask never needs to be stored: backward
// regenerates it. `offset` separates the draws of different steps/layers under one seed.
#pragma once

#include <cstdint>
#include <cstring>

#include "config.hpp"

namespace qlora {

struct Philox4x32 {
  std::uint32_t v[4];
};

namespace detail {
inline constexpr std::uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;   // round multipliers
inline constexpr std::uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;  // key schedule increments

// The ten rounds on the words c0..c3 of one counter (V = uint32) or of many (V = a vector of uint32 lanes);
// mulhi(a, m) gives the high words of the 32 × 32 → 64 products a · m (the low words are a · m in 32 bits).
template <class V, class MulHi>
QLORA_HD inline void philox_rounds(V& c0, V& c1, V& c2, V& c3, std::uint32_t key0, std::uint32_t key1, MulHi mulhi) {
  for (int round = 0; round < 10; ++round) {
    const V hi0 = mulhi(c0, kPhiloxMul0), hi1 = mulhi(c2, kPhiloxMul1);
    const V lo0 = c0 * kPhiloxMul0, lo1 = c2 * kPhiloxMul1;
    c0 = hi1 ^ c1 ^ key0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ key1;
    c3 = lo0;
    key0 += kPhiloxWeyl0;
    key1 += kPhiloxWeyl1;
  }
}
struct ScalarMulHi {
  QLORA_HD std::uint32_t operator()(std::uint32_t a, std::uint32_t m) const {
    return static_cast<std::uint32_t>((std::uint64_t{m} * a) >> 32);
  }
};
}  // namespace detail

QLORA_HD inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t key0, std::uint32_t key1) {
  std::uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
  detail::philox_rounds(c0, c1, c2, c3, key0, key1, detail::ScalarMulHi{});
  return {{c0, c1, c2, c3}};
}

// 16 counters at once, in place: c[w][j] is word w of counter j. The same rounds as philox4x32_10 on whole
// registers (GCC/Clang vector types: 16 × 32 bits, the 32 × 32 → 64 products on the even and the odd lanes), for
// the CPU dropout loop; other compilers run philox4x32_10 per counter.
inline void philox4x32_10_lanes(std::uint32_t (&c)[4][16], std::uint32_t key0, std::uint32_t key1) {
#if defined(__GNUC__) && !defined(__CUDACC__)
  typedef std::uint32_t u32x16 __attribute__((vector_size(64)));
  typedef std::uint64_t u64x8 __attribute__((vector_size(64)));
  const auto mulhi = [](u32x16 a, std::uint32_t m) {  // the high words of a · m, lane by lane
    const u64x8 even = ((u64x8)a & 0xffffffffull) * m, odd = ((u64x8)a >> 32) * m;
    return (u32x16)((even >> 32) | (odd & 0xffffffff00000000ull));
  };
  u32x16 w[4];
  std::memcpy(w, c, sizeof w);
  detail::philox_rounds(w[0], w[1], w[2], w[3], key0, key1, mulhi);
  std::memcpy(c, w, sizeof w);
#else
  for (int j = 0; j < 16; ++j) {
    const Philox4x32 r = philox4x32_10({{c[0][j], c[1][j], c[2][j], c[3][j]}}, key0, key1);
    for (int w = 0; w < 4; ++w) c[w][j] = r.v[w];
  }
#endif
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
