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

  TEST_CASE("adapters are types that say which projections they adapt") {
    static_assert(LoraQV<16>::adapts<Projection::q_proj> && !LoraQV<16>::adapts<Projection::k_proj>);
    static_assert(LoraAllLinear<8>::targets.size() == 7 && LoraAllLinear<8>::rank == 8);
    static_assert(!NoAdapter::adapts<Projection::q_proj>);
    CHECK(name_of(Projection::gate_proj) == "gate_proj");
  }

  TEST_CASE("a file's configuration is dispatched to its type or rejected with the differing fields") {
    auto cfg = runtime_config_of<Gemma3_270M>();
    CHECK(dispatch_config(cfg, "model.gguf", [](auto c) { return std::string(decltype(c)::name); }) == "gemma-3-270m");
    cfg.kv_heads = 2;
    CHECK_THROWS_WITH_AS(dispatch_config(cfg, "model.gguf", [](auto) { return 0; }),
                         "[config] model.gguf does not describe gemma-3-270m: num_key_value_heads 2 (expected 1)",
                         Error);
    cfg.hidden = 777;
    CHECK_THROWS_AS(dispatch_config(cfg, "model.gguf", [](auto) { return 0; }), Error);
  }
}
