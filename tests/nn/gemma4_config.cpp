// Gemma 4 configuration: the layer plan read from config.json files that transformers wrote (tiny variants and the
// published text sizes) equals what transformers derives from them (golden: tests/golden/gemma4_ops.py), in both
// spellings of the full layers' geometry (per_layer_config, global_head_dim / num_global_key_value_heads) and inside
// the multimodal wrapper; files qlora would compute differently from transformers are refused naming the field.
#include <doctest/doctest.h>

#include <string>

#include "support/golden.hpp"

#include <qlora/nn/gemma4_config.hpp>

using namespace qlora;

namespace {
// Checks every layer of `c` against the golden plan (type, head_dim, KV heads, sharing mode, MLP width, k = v).
void check_plan_equals(const Gemma4RuntimeConfig& c, const nlohmann::json& layers) {
  REQUIRE(static_cast<index_t>(layers.size()) == c.layers);
  for (index_t i = 0; i < c.layers; ++i) {
    CAPTURE(i);
    const auto& want = layers[static_cast<std::size_t>(i)];
    const Gemma4LayerPlan& l = c.layer(i);
    CHECK((l.attention == AttentionKind::full) == (want.at("type").get<std::string>() == "full_attention"));
    CHECK(l.head_dim == want.at("head_dim").get<index_t>());
    CHECK(l.kv_heads == want.at("kv_heads").get<index_t>());
    const std::string mode = want.at("kv_mode").get<std::string>();
    CHECK(std::string(detail::kv_sharing_name(l.kv)) == (mode.empty() ? std::string("own") : mode));
    CHECK(l.intermediate == want.at("intermediate").get<index_t>());
    CHECK(l.k_eq_v == want.at("k_eq_v").get<bool>());
    CHECK(l.window == (l.attention == AttentionKind::full ? 0 : c.sliding_window));
    if (l.kv == KvSharing::reuse) {  // the source is the last earlier storing layer of the same type
      const Gemma4LayerPlan& src = c.layer(l.kv_source);
      CHECK(l.kv_source < i);
      CHECK(src.kv == KvSharing::store);
      CHECK(src.attention == l.attention);
    } else {
      CHECK(l.kv_source == i);
    }
  }
}

std::string refusal(const nlohmann::json& j) {
  try {
    (void)gemma4_config_from_json(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}
}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("Gemma 4 layer plans equal transformers' for tiny variants and the published text sizes") {
    const test::GoldenSet golden("gemma4_ops");
    for (const auto& item : golden.params("plans").items()) {
      const std::string name = item.key();  // not a structured binding: CAPTURE's lambda cannot take one (clang 14)
      const nlohmann::json& entry = item.value();
      CAPTURE(name);
      const nlohmann::json& file = entry.at("config");
      const Gemma4RuntimeConfig c = gemma4_config_from_json(file, name);
      check_plan_equals(c, entry.at("layers"));
      CHECK(c.hidden == file.at("hidden_size").get<index_t>());
      CHECK(c.per_layer_embeddings() == (file.at("hidden_size_per_layer_input").get<index_t>() > 0));
      CHECK(c.moe == file.at("enable_moe_block").get<bool>());
      // sliding layers: default RoPE θ 1e4 on every pair; full layers: proportional θ 1e6 on a quarter
      CHECK(c.rope_sliding.theta == 10000.0);
      CHECK(c.rope_sliding.rotated_fraction == 1.0);
      CHECK(c.rope_full.theta == 1000000.0);
      CHECK(c.rope_full.rotated_fraction == 0.25);

      // the same model as the constructor's arguments spell it (configs not written by transformers 5.25)
      nlohmann::json ctor = file;
      ctor.erase("per_layer_config");
      ctor["global_head_dim"] = 512;
      if (name == "31b") ctor["num_global_key_value_heads"] = 4;
      if (name == "26b_a4b") ctor["num_global_key_value_heads"] = 2;
      if (name == "tiny_k_eq_v") ctor["num_global_key_value_heads"] = 1;
      check_plan_equals(gemma4_config_from_json(ctor, name + " (constructor fields)"), entry.at("layers"));

      // inside the multimodal checkpoint's config
      const nlohmann::json wrapped = {{"model_type", "gemma4"}, {"text_config", file}};
      check_plan_equals(gemma4_config_from_json(wrapped, name + " (multimodal)"), entry.at("layers"));
    }
  }

  TEST_CASE("the published sizes' plans: E2B's producers 13, 14 and double-wide consumers, 26B-A4B's experts") {
    const test::GoldenSet golden("gemma4_ops");
    const auto e2b = gemma4_config_from_json(golden.params("plans").at("e2b").at("config"), "e2b");
    CHECK(e2b.layer(13).kv == KvSharing::store);
    CHECK(e2b.layer(14).kv == KvSharing::store);
    CHECK(e2b.layer(14).attention == AttentionKind::full);
    CHECK(e2b.layer(15).kv_source == 13);
    CHECK(e2b.layer(19).kv_source == 14);  // full
    CHECK(e2b.layer(15).intermediate == 12288);
    CHECK(e2b.layer(12).intermediate == 6144);
    CHECK(e2b.final_logit_softcap == 30.0);
    const auto moe = gemma4_config_from_json(golden.params("plans").at("26b_a4b").at("config"), "26b");
    CHECK(moe.experts == 128);
    CHECK(moe.top_k_experts == 8);
    CHECK(moe.moe_intermediate == 704);
    CHECK(moe.layer(5).kv_heads == 2);
    CHECK(moe.layer(5).k_eq_v);
    CHECK(!moe.layer(4).k_eq_v);
  }

  TEST_CASE("Gemma 4 configs qlora would compute differently from transformers are refused naming the field") {
    const test::GoldenSet golden("gemma4_ops");
    const nlohmann::json base = golden.params("plans").at("tiny_kv_shared").at("config");
    auto with = [&](const char* key, nlohmann::json value) {
      nlohmann::json j = base;
      j[key] = std::move(value);
      return refusal(j);
    };
    CHECK(with("model_type", "gemma3_text") ==
          "[config] config.json: model_type is 'gemma3_text', not gemma4_text (a Gemma 4 text model)");
    CHECK(with("hidden_activation", "silu") ==
          "[config] config.json: hidden_activation 'silu' is not supported (Gemma 4: gelu_pytorch_tanh)");
    CHECK(with("use_bidirectional_attention", "all") ==
          "[config] config.json: use_bidirectional_attention 'all' (a non-causal text model) is not supported");
    CHECK(with("tie_word_embeddings", false) ==
          "[config] config.json: tie_word_embeddings false is not supported (Gemma 4's head is the embedding)");
    CHECK(with("num_kv_shared_layers", 8).starts_with(
        "[config] config.json: num_kv_shared_layers 8 must lie in [0, num_hidden_layers 8)"));
    CHECK(with("num_kv_shared_layers", 7) ==
          "[config] config.json: layers from 1 on reuse the keys and values of an earlier full_attention layer, and "
          "none comes before them (num_kv_shared_layers 7)");
    CHECK(with("hidden_size", 0) ==
          "[config] config.json: not a buildable Gemma 4 configuration: hidden_size 0 (must be >= 1)");
    CHECK(with("num_key_value_heads", 3) ==
          "[config] config.json: layer 0 has 3 KV heads for num_attention_heads 2 (must divide it)");
    CHECK(with("layer_types", nlohmann::json::array({"full_attention"})) ==
          "[config] config.json: layer_types lists 1 layers, num_hidden_layers is 8");
    CHECK(with("per_layer_config", {{"2", {{"intermediate_size", 7}}}}) ==
          "[config] config.json: per_layer_config['2'] overrides intermediate_size; qlora reads only head_dim and "
          "num_key_value_heads per layer");
    CHECK(with("per_layer_config", {{"9", {{"head_dim", 8}}}}) ==
          "[config] config.json: per_layer_config key '9' is not a layer index below 8");
    CHECK(with("per_layer_config", {{"2", {{"head_dim", 7}}}}) ==
          "[config] config.json: layer 2 has head_dim 7 (must be even, 2 to 512)");
    CHECK(with("rope_parameters", {{"full_attention", {{"rope_type", "yarn"}}}}) ==
          "[config] config.json: rope_parameters.full_attention rope_type 'yarn' is not supported (Gemma 4: default, "
          "proportional)");
    CHECK(with("enable_moe_block", true) == "[config] config.json: num_experts is missing");
    CHECK(with("vocab_size", "many") == "[config] config.json: vocab_size is \"many\", not an integer");
    nlohmann::json no_heads = base;
    no_heads.erase("num_attention_heads");
    CHECK(refusal(no_heads) == "[config] config.json: num_attention_heads is missing");
    // a consumer whose geometry differs from its producer's cannot attend over the producer's keys
    CHECK(with("per_layer_config", {{"2", {{"head_dim", 512}}}, {"4", {{"head_dim", 512}}}, {"7", {{"head_dim", 256}}}})
              .starts_with("[config] config.json: layer 7 reuses layer 4's keys and values, but its head_dim 256"));
    CHECK(refusal({{"model_type", "gemma3"}, {"text_config", base}}) ==
          "[config] config.json: model_type is 'gemma3', not gemma4");
  }
}
