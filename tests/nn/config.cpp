// Gemma 3 configurations as types, the layer pattern, adapters as types, and checking a file's config.
#include <doctest/doctest.h>

#include <qlora/nn/adapter.hpp>
#include <qlora/nn/config.hpp>

using namespace qlora;

TEST_SUITE("nn") {
  TEST_CASE("every 6th layer is global") {
    static_assert(!Gemma3_270M::is_global_layer(0));
    static_assert(Gemma3_270M::is_global_layer(5));
    static_assert(Gemma3_270M::is_global_layer(17));
    int globals = 0;
    for (index_t i = 0; i < Gemma3_270M::layers; ++i) globals += Gemma3_270M::is_global_layer(i);
    CHECK(globals == 3);
  }

  TEST_CASE("the configurations carry the published numbers") {
    static_assert(Gemma3_270M::q_dim == 1024 && Gemma3_270M::kv_dim == 256);
    static_assert(Gemma3_4B::vocab == 262208 && Gemma3_4B::rope_global_scaling == 8);
    static_assert(Gemma3_27B::head_dim == 128 && Gemma3_27B::query_pre_attn_scalar == 168);
    CHECK(Gemma3_1B::name == "gemma-3-1b");
  }

  TEST_CASE("projection names") {
    CHECK(name_of(Projection::gate_proj) == "gate_proj");
    CHECK(projection_module_name(3, Projection::q_proj) == "model.layers.3.self_attn.q_proj");
    CHECK(projection_module_name(0, Projection::down_proj) == "model.layers.0.mlp.down_proj");
  }

  TEST_CASE("a file's configuration is dispatched to its published size, else to the run-time-shaped model") {
    auto name_of_cfg = [](const Gemma3RuntimeConfig& c) {
      return dispatch_config(c, "model.gguf", [](auto cfg) { return std::string(decltype(cfg)::name); });
    };
    auto cfg = runtime_config_of<Gemma3_270M>();
    CHECK(name_of_cfg(cfg) == "gemma-3-270m");
    CHECK(model_name(cfg, "model.gguf") == "gemma-3-270m");
    cfg.kv_heads = 2;  // a community variant of the 270M shape: no published size, still a Gemma 3
    CHECK(name_of_cfg(cfg) == "gemma-3");
    CHECK(model_name(cfg, "model.gguf") == "gemma-3 (hidden 640, 18 layers)");
    CHECK_THROWS_WITH_AS(check_config<Gemma3_270M>(cfg, "model.gguf"),
                         "[config] model.gguf does not describe gemma-3-270m: num_key_value_heads 2 (expected 1)", Error);
    cfg.kv_heads = 3;
    CHECK_THROWS_WITH_AS(name_of_cfg(cfg), doctest::Contains("num_attention_heads 4 is not a multiple of num_key_value_heads 3"),
                         Error);
    cfg = runtime_config_of<Gemma3_270M>();
    cfg.hidden = 0;
    cfg.layers = -1;
    CHECK_THROWS_WITH_AS(name_of_cfg(cfg), doctest::Contains("hidden_size 0, num_hidden_layers -1 (must be >= 1)"), Error);
    cfg = runtime_config_of<Gemma3_270M>();
    cfg.head_dim = 7;
    CHECK_THROWS_WITH_AS(name_of_cfg(cfg), doctest::Contains("head_dim 7 is odd"), Error);
  }

  TEST_CASE("a configuration that leaves fields unsaid gets Gemma 3's defaults") {
    Gemma3RuntimeConfig c = runtime_config_of<Gemma3Tiny>();
    c.query_pre_attn_scalar = 0;
    c.rope_local_theta = 0;
    c.rope_global_theta = 0;
    c.rms_norm_eps = 0;
    const Gemma3RuntimeConfig full = complete_config(c, "tiny");
    CHECK(full.query_pre_attn_scalar == Gemma3Tiny::head_dim);
    CHECK(full.rope_local_theta == 10000.0);
    CHECK(full.rope_global_theta == 1e6);
    CHECK(full.rms_norm_eps == 1e-6);
  }

}
