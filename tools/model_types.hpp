// The one place where the program turns run-time choices into the model's static type: the file's configuration
// picks the Gemma 3 size (nn/config.hpp's dispatch_config), LoRA's r and target_modules pick the Adapter type. Every
// combination listed here is compiled into the program, so the lists are kept short: the sizes that train on a CPU,
// the ranks 8, 16, 32, 64 and the two target sets of the recipes (q_proj,v_proj and all seven linear layers).
#pragma once

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <qlora/nn/adapter.hpp>
#include <qlora/nn/config.hpp>

namespace qlora::cli {

template <class Cfg, class Adapter>
struct ModelTag {
  using config = Cfg;
  using adapter = Adapter;
};

enum class TargetSet { q_v, all_linear };

// "q_proj,v_proj" / the seven names in any order / "all-linear" (PEFT's shorthand).
inline TargetSet target_set_of(const std::vector<std::string>& modules) {
  std::set<std::string> s(modules.begin(), modules.end());
  if (s == std::set<std::string>{"all-linear"}) return TargetSet::all_linear;
  if (s == std::set<std::string>{"q_proj", "v_proj"}) return TargetSet::q_v;
  if (s == std::set<std::string>(projection_names.begin(), projection_names.end())) return TargetSet::all_linear;
  std::string given;
  for (const auto& m : modules) given += (given.empty() ? "" : ",") + m;
  fail("lora", "target_modules '", given, "' is not supported; use q_proj,v_proj or all seven "
       "(q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all-linear)");
}

template <class Cfg, index_t R, class Fn>
int with_targets(TargetSet t, Fn& fn) {
  if (t == TargetSet::q_v) return fn(ModelTag<Cfg, LoraQV<R>>{});
  return fn(ModelTag<Cfg, LoraAllLinear<R>>{});
}

// The sizes a CPU build trains in reasonable time; the larger ones need the CUDA build of finetune. (The tiny test
// model has no tokenizer; the library's tests train it directly.) Each size here compiles 8 model types.
template <class Cfg>
inline constexpr bool cpu_trainable = std::is_same_v<Cfg, Gemma3_270M> || std::is_same_v<Cfg, Gemma3_1B>;

// Calls fn(ModelTag<Cfg, Adapter>{}) for the file's configuration and the LoRA settings.
template <class Fn>
int with_lora_model(const Gemma3RuntimeConfig& file, const std::string& source, long r,
                    const std::vector<std::string>& target_modules, Fn&& fn) {
  const TargetSet targets = target_set_of(target_modules);
  return dispatch_config(file, source, [&](auto cfg) -> int {
    using Cfg = decltype(cfg);
    if constexpr (!cpu_trainable<Cfg>) {
      fail("model", source, " is ", Cfg::name, ": this build of qlora trains gemma-3-270m and gemma-3-1b on the CPU; "
           "larger models need the CUDA build of `qlora finetune`, which is not in this version");
    } else {
      switch (r) {
        case 8: return with_targets<Cfg, 8>(targets, fn);
        case 16: return with_targets<Cfg, 16>(targets, fn);
        case 32: return with_targets<Cfg, 32>(targets, fn);
        case 64: return with_targets<Cfg, 64>(targets, fn);
        default: fail("lora", "r ", r, " is not one of the ranks this program is built for (8, 16, 32, 64)");
      }
    }
  });
}

}  // namespace qlora::cli
