// Optimizer states in optimizer.safetensors, so that a run resumed from a checkpoint continues the exact update
// sequence of an uninterrupted one. Per parameter, under its ParameterList name:
//   <name>.exp_avg, <name>.exp_avg_sq   F32 [numel]    AdamW, and AdamW8bit's 32-bit path (below min_8bit_size)
//   <name>.state1, <name>.state2        U8  [numel]    AdamW8bit's blockwise 8-bit codes of m and v
//   <name>.absmax1, <name>.absmax2      F32 [blocks]   their per-block scales (blocks of 256)
//   <name>.step                         I64 []         the parameter's own step count (torch keeps one per parameter)
// Metadata: {"format": "qlora", "optimizer": "adamw" | "adamw8bit", "config": the optimizer's config as JSON}.
// Loading wants the same optimizer kind and exactly these tensors, with these dtypes and element counts: anything
// missing, extra or resized is a qlora::Error naming the file and the parameter, and the optimizer is left untouched
// (everything is read and checked before anything is restored). GPU states go through the host both ways.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../optim/adamw.hpp"
#include "../optim/adamw8bit.hpp"
#include "../core/text.hpp"
#include "safetensors.hpp"

namespace qlora {

inline constexpr std::string_view optimizer_state_file_name = "optimizer.safetensors";

namespace detail {

inline nlohmann::json optimizer_config_json(const AdamWConfig& c) {
  return {{"beta1", c.beta1}, {"beta2", c.beta2}, {"eps", c.eps}, {"weight_decay", c.weight_decay}};
}
inline nlohmann::json optimizer_config_json(const AdamW8bitConfig& c) {
  return {{"beta1", c.beta1},          {"beta2", c.beta2}, {"eps", c.eps}, {"weight_decay", c.weight_decay},
          {"min_8bit_size", c.min_8bit_size}, {"paged", c.paged}, {"blocksize", AdamW8bitConfig::blocksize}};
}

// A SafetensorsWriter with the metadata of optimizer `kind` and the step tensors.
class OptimizerStateWriter {
 public:
  OptimizerStateWriter(std::string kind, const nlohmann::json& config) {
    writer_.set_metadata({{"format", "qlora"}, {"optimizer", std::move(kind)}, {"config", config.dump()}});
  }
  template <class T>
  void add(const Parameter& p, std::string_view suffix, const Tensor<T, Dyn>& t) {
    writer_.add(p.name() + "." + std::string(suffix), t);
  }
  void add_step(const Parameter& p, long step) {
    writer_.add(p.name() + ".step", Tensor<std::int64_t>::from({static_cast<std::int64_t>(step)}));
  }
  void write(const std::filesystem::path& path) const { writer_.write(path); }

 private:
  SafetensorsWriter writer_;
};

// An opened optimizer.safetensors of optimizer `kind`; hands out each parameter's tensors once, checked, and at the
// end refuses tensors no parameter asked for.
class OptimizerStateReader {
 public:
  OptimizerStateReader(const std::filesystem::path& path, std::string_view kind) : file_(open(path)) {
    const auto& meta = file_.metadata();
    const auto found = meta.find("optimizer");
    if (found == meta.end()) error("not an optimizer state file (its metadata has no \"optimizer\")");
    if (found->second != kind)
      error("holds the state of optimizer ", found->second, ", but it is being loaded into ", kind);
  }

  // <name>.<suffix>, which must be a 1-D tensor of dtype T with `numel` elements.
  template <class T>
  Tensor<T, Dyn> take(const Parameter& p, std::string_view suffix, index_t numel) {
    const SafetensorsTensorInfo& t = info(p, std::string(suffix));
    if (t.dtype != safetensors_dtype_of<T>())
      error("parameter '", p.name(), "': tensor ", t.name, " is ", safetensors_dtype_name(t.dtype), ", expected ",
            safetensors_dtype_name(safetensors_dtype_of<T>()));
    if (t.shape.size() != 1 || t.shape[0] != numel)
      error("parameter '", p.name(), "': tensor ", t.name, " has shape ", shape_str(t.shape), ", expected [", numel,
            "] (the parameter has ", p.numel(), " elements)");
    return file_.read<T, Dyn>(t.name);
  }
  long step(const Parameter& p) {
    const SafetensorsTensorInfo& t = info(p, "step");
    if (t.dtype != SafetensorsDtype::I64 || !t.shape.empty())
      error("parameter '", p.name(), "': tensor ", t.name, " is not a single I64 step count");
    const std::int64_t step = file_.read<std::int64_t>(t.name).item();
    if (step < 0) error("parameter '", p.name(), "': negative step count ", step);
    return static_cast<long>(step);
  }
  // After every parameter took its tensors: none may be left over.
  void check_nothing_extra() const {
    std::set<std::string> extra;
    for (const auto& t : file_.tensors())
      if (!taken_.count(t.name)) extra.insert(t.name);
    if (extra.empty()) return;
    error("tensors that belong to no parameter of this optimizer (a different model or adapter?): ", joined(extra));
  }
  bool has(const Parameter& p, std::string_view suffix) const {
    return file_.contains(p.name() + "." + std::string(suffix));
  }

 private:
  static SafetensorsFile open(const std::filesystem::path& path) {
    if (!std::filesystem::exists(path)) fail("optimizer_state", path.string(), ": no such file");
    return SafetensorsFile(path);
  }
  static std::string shape_str(const std::vector<index_t>& shape) { return detail::shape_str(shape); }
  const SafetensorsTensorInfo& info(const Parameter& p, const std::string& suffix) {
    const std::string name = p.name() + "." + suffix;
    if (!file_.contains(name)) error("parameter '", p.name(), "': tensor ", name, " is missing");
    taken_.insert(name);
    return file_.info(name);
  }
  template <class... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    fail("optimizer_state", file_.path().string(), ": ", std::forward<Parts>(parts)...);
  }

  SafetensorsFile file_;
  std::set<std::string> taken_;
};

}  // namespace detail

QLORA_DISPATCH_BEGIN

inline void save_optimizer_state(const AdamW& opt, const std::filesystem::path& path) {
  detail::OptimizerStateWriter out("adamw", detail::optimizer_config_json(opt.config()));
  for (std::size_t i = 0; i < opt.parameters().size(); ++i) {
    const Parameter& p = opt.parameters()[i];
    const AdamW::State& s = opt.states()[i];
    out.add(p, "exp_avg", s.m);
    out.add(p, "exp_avg_sq", s.v);
    out.add_step(p, s.step);
  }
  out.write(path);
}

inline void load_optimizer_state(AdamW& opt, const std::filesystem::path& path) {
  detail::OptimizerStateReader in(path, "adamw");
  std::vector<AdamW::State> saved;
  for (const Parameter& p : opt.parameters()) {
    Tensor<float, Dyn> m = in.take<float>(p, "exp_avg", p.numel());
    Tensor<float, Dyn> v = in.take<float>(p, "exp_avg_sq", p.numel());
    saved.push_back({m, v, in.step(p)});
  }
  in.check_nothing_extra();
  for (std::size_t i = 0; i < saved.size(); ++i) opt.restore(i, saved[i]);
}

inline void save_optimizer_state(const AdamW8bit& opt, const std::filesystem::path& path) {
  detail::OptimizerStateWriter out("adamw8bit", detail::optimizer_config_json(opt.config()));
  for (std::size_t i = 0; i < opt.parameters().size(); ++i) {
    const Parameter& p = opt.parameters()[i];
    const AdamW8bit::State& s = opt.states()[i];
    if (s.eight_bit) {
      out.add(p, "state1", s.state1);
      out.add(p, "state2", s.state2);
      out.add(p, "absmax1", s.absmax1);
      out.add(p, "absmax2", s.absmax2);
    } else {
      out.add(p, "exp_avg", s.m);
      out.add(p, "exp_avg_sq", s.v);
    }
    out.add_step(p, s.step);
  }
  out.write(path);
}

inline void load_optimizer_state(AdamW8bit& opt, const std::filesystem::path& path) {
  detail::OptimizerStateReader in(path, "adamw8bit");
  std::vector<AdamW8bit::State> saved;
  for (std::size_t i = 0; i < opt.parameters().size(); ++i) {
    const Parameter& p = opt.parameters()[i];
    AdamW8bit::State s;
    s.eight_bit = opt.states()[i].eight_bit;
    if (s.eight_bit) {
      if (in.has(p, "exp_avg"))
        fail("optimizer_state", path.string(), ": parameter '", p.name(), "': the file keeps 32-bit states, but its ",
             p.numel(), " elements take 8-bit states here (min_8bit_size ", opt.config().min_8bit_size, ")");
      const index_t blocks = blockwise_block_count(p.numel(), AdamW8bitConfig::blocksize);
      s.state1 = in.take<std::uint8_t>(p, "state1", p.numel());
      s.state2 = in.take<std::uint8_t>(p, "state2", p.numel());
      s.absmax1 = in.take<float>(p, "absmax1", blocks);
      s.absmax2 = in.take<float>(p, "absmax2", blocks);
    } else {
      if (in.has(p, "state1"))
        fail("optimizer_state", path.string(), ": parameter '", p.name(), "': the file keeps 8-bit states, but its ",
             p.numel(), " elements take 32-bit states here (min_8bit_size ", opt.config().min_8bit_size, ")");
      s.m = in.take<float>(p, "exp_avg", p.numel());
      s.v = in.take<float>(p, "exp_avg_sq", p.numel());
    }
    s.step = in.step(p);
    saved.push_back(std::move(s));
  }
  in.check_nothing_extra();
  for (std::size_t i = 0; i < saved.size(); ++i) opt.restore(i, saved[i]);
}

QLORA_DISPATCH_END
}  // namespace qlora
