// Which projections of a Gemma block carry LoRA, and with which rank, as a type: the recipe that adapts only q_proj
// and v_proj and the one that adapts all seven are two different types, so a model's parameter layout is known at
// compile time. `NoAdapter` is the frozen model (inference, merged weights).
#pragma once

#include <array>
#include <string_view>

#include "../core/config.hpp"

namespace qlora {

enum class Projection { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };

inline constexpr std::array<std::string_view, 7> projection_names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"};
constexpr std::string_view name_of(Projection p) { return projection_names[static_cast<int>(p)]; }

template <index_t Rank, Projection... Targets>
struct LoraAdapter {
  static_assert(Rank > 0, "a LoRA adapter needs a positive rank");
  static_assert(sizeof...(Targets) > 0, "a LoRA adapter needs at least one target projection");
  static constexpr index_t rank = Rank;
  template <Projection P>
  static constexpr bool adapts = ((P == Targets) || ...);
  static constexpr std::array<Projection, sizeof...(Targets)> targets = {Targets...};
};

struct NoAdapter {
  static constexpr index_t rank = 0;
  template <Projection P>
  static constexpr bool adapts = false;
};

// The two adapters of the seed recipes.
template <index_t Rank>
using LoraQV = LoraAdapter<Rank, Projection::q_proj, Projection::v_proj>;
template <index_t Rank>
using LoraAllLinear = LoraAdapter<Rank, Projection::q_proj, Projection::k_proj, Projection::v_proj, Projection::o_proj,
                                  Projection::gate_proj, Projection::up_proj, Projection::down_proj>;

}  // namespace qlora
