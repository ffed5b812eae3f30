// KV-cache generation against the model's own full forward pass: the cached logits of every step equal the logits
// of a forward over the whole sequence (also past the sliding window, 4 tokens in the tiny model), greedy decoding
// gives the same tokens, stop tokens end generation, sampling with a seed is reproducible.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "support/lora.hpp"
#include "support/models.hpp"
#include <qlora/train/generate.hpp>

using namespace qlora;

namespace {
// The tiny model with its NF4 base and a random all-linear adapter.
std::unique_ptr<CausalLM> adapted_tiny() {
  auto m = test::open_tiny(test::lora_options(2, all_linear_targets()), CausalLMWeights::nf4);
  test::randomise_lora_b(*m, 1, 0.3f);
  return m;
}
}  // namespace

TEST_SUITE("train") {
  TEST_CASE("cached generation equals greedy decoding by full forward passes, past the sliding window") {
    const auto model = adapted_tiny();
    const std::vector<std::int32_t> prompt = {2, 17, 200, 45, 45, 9};
    GenerationConfig config;
    config.max_new_tokens = 12;
    const Generation g = generate(*model, prompt, config);
    REQUIRE(g.tokens.size() == 12);
    CHECK_FALSE(g.stopped);

    std::vector<std::int32_t> seq = prompt;
    const auto cache = model->decoder(64);
    std::vector<float> cached = cache->extend(prompt);
    for (std::size_t step = 0; step < 12; ++step) {
      const auto full = model->logits(model_input(seq));
      const index_t last = full.size(0) - 1;
      float worst = 0;
      std::int32_t best = 0;
      for (index_t v = 0; v < full.size(1); ++v) {
        worst = std::max(worst, std::abs(full(last, v) - cached[static_cast<std::size_t>(v)]));
        if (full(last, v) > full(last, best)) best = static_cast<std::int32_t>(v);
      }
      CAPTURE(step);
      CHECK(worst < 1e-4f);
      CHECK(best == g.tokens[step]);
      seq.push_back(g.tokens[step]);
      cached = cache->extend(std::span<const std::int32_t>(&g.tokens[step], 1));
    }
  }

  TEST_CASE("each token reaches on_token as it is chosen; prefill and decode are timed apart") {
    const auto model = adapted_tiny();
    const std::vector<std::int32_t> prompt = {2, 17, 200, 45};
    GenerationConfig config;
    config.max_new_tokens = 6;
    std::vector<std::int32_t> seen;
    config.on_token = [&](std::int32_t id) { seen.push_back(id); };
    const Generation g = generate(*model, prompt, config);
    CHECK(seen == g.tokens);
    CHECK(g.prompt_tokens == 4);
    CHECK(g.decode_passes == static_cast<index_t>(g.tokens.size()) - 1);  // the first token comes from the prefill
    CHECK(g.prefill_seconds > 0);
    CHECK(g.decode_seconds > 0);
    CHECK(g.prefill_tokens_per_second() == doctest::Approx(4 / g.prefill_seconds));
  }

  TEST_CASE("generation stops at a stop token and keeps it") {
    const auto model = adapted_tiny();
    const std::vector<std::int32_t> prompt = {2, 5, 77};
    GenerationConfig config;
    config.max_new_tokens = 8;
    const auto first = generate(*model, prompt, config);
    REQUIRE(first.tokens.size() >= 2);
    config.stop_ids = {first.tokens[1]};
    const auto stopped = generate(*model, prompt, config);
    CHECK(stopped.stopped);
    CHECK(stopped.tokens.back() == first.tokens[1]);
    CHECK(stopped.tokens.size() <= 2);
  }

  TEST_CASE("sampling with a seed is reproducible and a different seed changes it") {
    const auto model = adapted_tiny();
    GenerationConfig config;
    config.max_new_tokens = 16;
    config.sampling = {true, 1.5, 0, 1.0, 7};
    const auto a = generate(*model, {2, 17}, config);
    const auto b = generate(*model, {2, 17}, config);
    CHECK(a.tokens == b.tokens);
    config.sampling.seed = 8;
    const auto c = generate(*model, {2, 17}, config);
    CHECK(a.tokens != c.tokens);
  }

  TEST_CASE("the int8 decode kernel: NF4 codes and Q8_0 blocks, logits near the fp32 path's, the adapter kept") {
    const auto model = adapted_tiny();
    const auto plain = test::open_tiny({}, CausalLMWeights::nf4);  // the same base without the adapter
    const std::vector<std::int32_t> prompt = {2, 17, 200, 45, 45, 9};
    const auto exact = model->decoder(32);
    const auto packed = model->decoder(32, DecodeKernel::int8);
    const auto unadapted = plain->decoder(32);
    CHECK(exact->products() == "fp32 (the model's GEMMs)");
    // the tiny model's rows of 32 are not whole NF4 blocks of 64 (Q8_0 then); down_proj's rows of 64 are
    CHECK(packed->products().find("42 projections Q8_0/NF4") != std::string::npos);
    CHECK(packed->products().find("LM head Q8_0") != std::string::npos);
    std::vector<float> a = exact->extend(prompt), b = packed->extend(prompt), c = unadapted->extend(prompt);
    for (int step = 0; step < 8; ++step) {
      float scale = 0, error = 0, adapter = 0;
      for (std::size_t v = 0; v < a.size(); ++v) {
        scale = std::max(scale, std::abs(a[v]));
        error = std::max(error, std::abs(a[v] - b[v]));
        adapter = std::max(adapter, std::abs(a[v] - c[v]));
      }
      CAPTURE(step);
      CHECK(error <= 0.05f * scale);  // 1-3 % here: six layers of int8 rounding in rows of one block
      CHECK(error <= 0.1f * adapter);  // the adapter's part is there (it is fp32 beside the packed base)
      const auto next = static_cast<std::int32_t>(std::max_element(a.begin(), a.end()) - a.begin());
      a = exact->extend(std::span<const std::int32_t>(&next, 1));
      b = packed->extend(std::span<const std::int32_t>(&next, 1));
      c = unadapted->extend(std::span<const std::int32_t>(&next, 1));
    }
    GenerationConfig config;
    config.max_new_tokens = 6;
    config.decode_kernel = DecodeKernel::int8;
    CHECK(generate(*model, prompt, config).tokens.size() == 6);
  }

  TEST_CASE("a prompt longer than the cache is an error naming the sizes") {
    const auto model = adapted_tiny();
    const auto cache = model->decoder(3);
    const std::vector<std::int32_t> prompt = {2, 5, 77, 8};
    CHECK_THROWS_WITH_AS(cache->extend(prompt), doctest::Contains("holds 3 positions; 4 needed"), qlora::Error);
  }
}
