// Gemma 3 text-model configurations as types (numbers from the Hugging Face config.json of each checkpoint), a
// tiny configuration for tests, the runtime configuration read from files, and the check between the two.
//
// Every 6th layer ((i + 1) % 6 == 0) attends globally with rope θ = 1e6 (and linear scaling 8 from 4B up); the
// others use a sliding window with θ = 1e4. Attention scores are scaled by query_pre_attn_scalar^-0.5.
#pragma once

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>
#include <string>
#include <string_view>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace qlora {

// The numbers that differ between Gemma 3 sizes. Each config type derives from it with its values.
template <index_t Hidden, index_t Intermediate, index_t Layers, index_t Heads, index_t KvHeads, index_t HeadDim,
          index_t Vocab, index_t Window, int QueryPreAttnScalar, int GlobalRopeScaling>
struct Gemma3Shape {
  static constexpr index_t hidden = Hidden;              // hidden_size
  static constexpr index_t intermediate = Intermediate;  // intermediate_size
  static constexpr index_t layers = Layers;              // num_hidden_layers
  static constexpr index_t heads = Heads;                // num_attention_heads
  static constexpr index_t kv_heads = KvHeads;           // num_key_value_heads
  static constexpr index_t head_dim = HeadDim;
  static constexpr index_t vocab = Vocab;                // vocab_size
  static constexpr index_t sliding_window = Window;
  static constexpr double query_pre_attn_scalar = QueryPreAttnScalar;
  static constexpr double rope_local_theta = 10000.0;    // rope_local_base_freq
  static constexpr double rope_global_theta = 1000000.0; // rope_theta
  static constexpr double rope_global_scaling = GlobalRopeScaling;  // rope_scaling.factor (linear), 1 = none
  static constexpr double rms_norm_eps = 1e-6;
  static constexpr index_t sliding_window_pattern = 6;

  static constexpr bool is_static = true;  // every extent is a compile-time constant
  static_assert(Heads % KvHeads == 0, "query heads must be a multiple of key/value heads");
  static constexpr bool is_global_layer(index_t layer) { return (layer + 1) % sliding_window_pattern == 0; }
  static constexpr index_t q_dim = Heads * HeadDim;
  static constexpr index_t kv_dim = KvHeads * HeadDim;
};

struct Gemma3_270M : Gemma3Shape<640, 2048, 18, 4, 1, 256, 262144, 512, 256, 1> {
  static constexpr std::string_view name = "gemma-3-270m";
};
struct Gemma3_1B : Gemma3Shape<1152, 6912, 26, 4, 1, 256, 262144, 512, 256, 1> {
  static constexpr std::string_view name = "gemma-3-1b";
};
struct Gemma3_4B : Gemma3Shape<2560, 10240, 34, 8, 4, 256, 262208, 1024, 256, 8> {
  static constexpr std::string_view name = "gemma-3-4b";
};
struct Gemma3_12B : Gemma3Shape<3840, 15360, 48, 16, 8, 256, 262208, 1024, 256, 8> {
  static constexpr std::string_view name = "gemma-3-12b";
};
struct Gemma3_27B : Gemma3Shape<5376, 21504, 62, 32, 16, 128, 262208, 1024, 168, 8> {
  static constexpr std::string_view name = "gemma-3-27b";
};
// Small enough for fp64 gradchecks and golden files; 6 layers so that layer 5 is global.
struct Gemma3Tiny : Gemma3Shape<32, 64, 6, 4, 2, 8, 300, 4, 8, 1> {
  static constexpr std::string_view name = "gemma-3-tiny";
};

// Any Gemma 3 text model: every extent is read from the file at run time (Dyn in the model's types). Serves the
// configurations the published sizes do not cover (tiny test checkpoints, community variants).
struct Gemma3AnySize {
  static constexpr std::string_view name = "gemma-3";
  static constexpr bool is_static = false;
};

// The same numbers read at run time (config.json or GGUF metadata); -1 / 0 where a file did not say.
struct Gemma3RuntimeConfig {
  index_t hidden = -1, intermediate = -1, layers = -1, heads = -1, kv_heads = -1, head_dim = -1, vocab = -1;
  index_t sliding_window = -1;
  double query_pre_attn_scalar = 0, rope_local_theta = 0, rope_global_theta = 0, rope_global_scaling = 1;
  double rms_norm_eps = 0;

  index_t q_dim() const { return heads * head_dim; }
  index_t kv_dim() const { return kv_heads * head_dim; }
  // Every 6th layer attends globally (Gemma 3's sliding_window_pattern).
  static constexpr bool is_global_layer(index_t layer) { return (layer + 1) % 6 == 0; }
};

// The transformers class a checkpoint's names follow: the text-only Gemma3ForCausalLM (270M, 1B; GGUF files) or the
// multimodal Gemma3ForConditionalGeneration (4B, 12B, 27B: text model beside a vision tower). It decides the names of
// module, weight and adapter tensors ("model.layers.0..." / "model.language_model.layers.0...").
enum class ModelLayout { causal_lm, conditional_generation };

// The model's extents as types: Dim<N> for a published size, Dyn for Gemma3AnySize.
template <class Cfg>
struct Gemma3Dims {
  using hidden = Dim<Cfg::hidden>;
  using intermediate = Dim<Cfg::intermediate>;
  using heads = Dim<Cfg::heads>;
  using kv_heads = Dim<Cfg::kv_heads>;
  using head_dim = Dim<Cfg::head_dim>;
  using vocab = Dim<Cfg::vocab>;
  using q = Dim<Cfg::q_dim>;
  using kv = Dim<Cfg::kv_dim>;
};
template <>
struct Gemma3Dims<Gemma3AnySize> {
  using hidden = Dyn;
  using intermediate = Dyn;
  using heads = Dyn;
  using kv_heads = Dyn;
  using head_dim = Dyn;
  using vocab = Dyn;
  using q = Dyn;
  using kv = Dyn;
};

template <class Cfg>
Gemma3RuntimeConfig runtime_config_of() {
  return {Cfg::hidden,         Cfg::intermediate,          Cfg::layers,           Cfg::heads,
          Cfg::kv_heads,       Cfg::head_dim,              Cfg::vocab,            Cfg::sliding_window,
          Cfg::query_pre_attn_scalar, Cfg::rope_local_theta, Cfg::rope_global_theta, Cfg::rope_global_scaling,
          Cfg::rms_norm_eps};
}

namespace detail {
// The extents of a configuration that must be >= 1 and are not, gathered so one error names them all:
// "not a buildable Gemma 3 configuration: hidden_size 0, head_dim -1 (must be >= 1)".
class PositiveFields {
 public:
  // `least`: 1, or 0 for an extent that may be absent (written "(must be >= 0)" beside it).
  void check(const char* field, index_t v, index_t least = 1) {
    if (v >= least) return;
    bad_ += concat(bad_.empty() ? "" : ", ", field, " ", v, least == 1 ? "" : " (must be >= 0)");
    below_one_ = below_one_ || least == 1;
  }
  void fail_if_any(std::string_view source, std::string_view model) const {
    if (!bad_.empty())
      fail("config", source, ": not a buildable ", model, " configuration: ", bad_, below_one_ ? " (must be >= 1)" : "");
  }

 private:
  std::string bad_;
  bool below_one_ = false;
};
}  // namespace detail

// A file's configuration completed with Gemma 3's defaults where the file is silent (query_pre_attn_scalar =
// head_dim as llama.cpp assumes for GGUF files, rope θ 10 000 local / 1e6 global, rms_norm_eps 1e-6) and checked to
// describe a model that can be built: positive extents, query heads a multiple of key/value heads, even head_dim.
inline Gemma3RuntimeConfig complete_config(Gemma3RuntimeConfig c, std::string_view source) {
  detail::PositiveFields extents;
  extents.check("hidden_size", c.hidden);
  extents.check("intermediate_size", c.intermediate);
  extents.check("num_hidden_layers", c.layers);
  extents.check("num_attention_heads", c.heads);
  extents.check("num_key_value_heads", c.kv_heads);
  extents.check("head_dim", c.head_dim);
  extents.check("vocab_size", c.vocab);
  extents.check("sliding_window", c.sliding_window);
  extents.fail_if_any(source, "Gemma 3");
  if (c.heads % c.kv_heads != 0)
    fail("config", source, ": num_attention_heads ", c.heads, " is not a multiple of num_key_value_heads ", c.kv_heads);
  if (c.head_dim % 2 != 0) fail("config", source, ": head_dim ", c.head_dim, " is odd (RoPE rotates pairs)");
  if (c.query_pre_attn_scalar == 0) c.query_pre_attn_scalar = static_cast<double>(c.head_dim);
  if (c.rope_local_theta == 0) c.rope_local_theta = 10000.0;
  if (c.rope_global_theta == 0) c.rope_global_theta = 1000000.0;
  if (c.rms_norm_eps == 0) c.rms_norm_eps = 1e-6;
  if (!(c.query_pre_attn_scalar > 0) || !(c.rope_local_theta > 0) || !(c.rope_global_theta > 0) ||
      !(c.rope_global_scaling > 0) || !(c.rms_norm_eps > 0))
    fail("config", source, ": query_pre_attn_scalar, rope θ, rope scaling and rms_norm_eps must be positive");
  return c;
}

// Every field where the file's configuration differs from the type's, "field have (expected want), ..."; empty when
// the file describes Cfg (fields the file does not give are not compared).
template <class Cfg>
std::string config_differences(const Gemma3RuntimeConfig& file) {
  const Gemma3RuntimeConfig want = runtime_config_of<Cfg>();
  std::string diffs;
  auto cmp = [&](const char* field, double have, double expected) {
    if (have != expected)
      diffs += detail::concat(diffs.empty() ? "" : ", ", field, " ", have, " (expected ", expected, ")");
  };
  cmp("hidden_size", file.hidden, want.hidden);
  cmp("intermediate_size", file.intermediate, want.intermediate);
  cmp("num_hidden_layers", file.layers, want.layers);
  cmp("num_attention_heads", file.heads, want.heads);
  cmp("num_key_value_heads", file.kv_heads, want.kv_heads);
  cmp("head_dim", file.head_dim, want.head_dim);
  cmp("vocab_size", file.vocab, want.vocab);
  cmp("sliding_window", file.sliding_window, want.sliding_window);
  if (file.query_pre_attn_scalar) cmp("query_pre_attn_scalar", file.query_pre_attn_scalar, want.query_pre_attn_scalar);
  if (file.rope_local_theta) cmp("rope_local_base_freq", file.rope_local_theta, want.rope_local_theta);
  if (file.rope_global_theta) cmp("rope_theta", file.rope_global_theta, want.rope_global_theta);
  cmp("rope_scaling.factor", file.rope_global_scaling, want.rope_global_scaling);
  return diffs;
}

// Throws naming every field where the file's configuration differs from the type's (`source`: the file).
template <class Cfg>
void check_config(const Gemma3RuntimeConfig& file, std::string_view source) {
  const std::string diffs = config_differences<Cfg>(file);
  if (!diffs.empty()) fail("config", source, " does not describe ", Cfg::name, ": ", diffs);
}

// The configurations a file can be dispatched to.
using Gemma3Configs = std::tuple<Gemma3_270M, Gemma3_1B, Gemma3_4B, Gemma3_12B, Gemma3_27B, Gemma3Tiny>;

// Whether the file describes exactly this published size (every field it gives equals the type's).
template <class Cfg>
bool describes(const Gemma3RuntimeConfig& file) {
  return config_differences<Cfg>(file).empty();
}

// Calls fn(Cfg{}) with the published size the file describes, or fn(Gemma3AnySize{}) for any other buildable
// configuration (checked by complete_config); the programs' one dispatch point.
template <class Fn>
auto dispatch_config(const Gemma3RuntimeConfig& file, std::string_view source, Fn&& fn) {
  using Result = decltype(fn(Gemma3AnySize{}));
  std::optional<std::conditional_t<std::is_void_v<Result>, int, Result>> result;
  auto call = [&](auto cfg) {
    if constexpr (std::is_void_v<Result>) {
      fn(cfg);
      result = 0;
    } else {
      result = fn(cfg);
    }
  };
  auto try_one = [&](auto cfg) {
    if (!result && describes<decltype(cfg)>(file)) call(cfg);
  };
  std::apply([&](auto... cfgs) { (try_one(cfgs), ...); }, Gemma3Configs{});
  if (!result) {
    (void)complete_config(file, source);
    call(Gemma3AnySize{});
  }
  if constexpr (!std::is_void_v<Result>) return std::move(*result);
}

// The name of the model a file describes: "gemma-3-270m", or "gemma-3 (hidden 64, 6 layers)" for other shapes.
inline std::string model_name(const Gemma3RuntimeConfig& file, std::string_view source) {
  return dispatch_config(file, source, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if constexpr (Cfg::is_static) return std::string(Cfg::name);
    else return detail::concat(Cfg::name, " (hidden ", file.hidden, ", ", file.layers, " layers)");
  });
}

}  // namespace qlora
