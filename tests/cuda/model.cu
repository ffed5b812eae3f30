// Two whole models on two streams: the tiny Gemma 3 (NF4 base, rank-2 LoRA on all seven projections) built on two
// streams of one GPU and run — forward, loss, backward — from two threads at once; each stream's loss and LoRA
// gradients equal the CPU model's. (The block-level test of the same is in expr.cu.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "support/concurrent.hpp"

#include <qlora/cuda.hpp>
#include <qlora/nn/model.hpp>

namespace {
using TinyModel = qlora::Gemma3<qlora::Gemma3Tiny, float, qlora::NF4>;

struct TinyStep {
  float loss = 0;
  std::vector<std::vector<float>> grads;  // every LoRA matrix, PEFT's order
};

TinyStep tiny_step(const qlora::Device& device) {
  using namespace qlora;
  Gemma3Options options;
  LoraConfig lora;
  lora.r = 2;
  lora.lora_alpha = 8;
  lora.target_modules = all_linear_targets();
  options.lora = LoraTargets(lora);
  options.device = device;
  const TinyModel model(Gemma3WeightSource::open(std::filesystem::path(QLORA_TEST_DATA_DIR) / "gemma3_model" / "tiny"),
                        options);
  std::vector<Sample> samples(2);
  samples[0].input_ids = {2, 17, 200, 45, 45, 9, 120, 3, 77};
  samples[0].labels = {-100, -100, 200, 45, 45, 9, 120, 3, 77};
  samples[1].input_ids = {2, 5, 77, 8, 250, 11};
  samples[1].labels = samples[1].input_ids;
  const auto loss = model.loss_sum(model_input(pad_batch(samples, 0), device), ForwardPass{});
  backward(loss.sum);
  TinyStep out;
  out.loss = loss.sum.value().item();
  for (const auto& p : model.lora_parameters()) out.grads.push_back(p.grad().to_vector());  // lora_A's are 0: B = 0
  return out;
}

void check_step(const TinyStep& got, const TinyStep& want, double rtol) {
  CHECK(std::abs(got.loss - want.loss) <= rtol * std::abs(want.loss));
  REQUIRE(got.grads.size() == want.grads.size());
  for (std::size_t i = 0; i < want.grads.size(); ++i) {
    CAPTURE(i);
    REQUIRE(got.grads[i].size() == want.grads[i].size());
    double worst = 0, scale = 1e-12;
    for (std::size_t j = 0; j < want.grads[i].size(); ++j) {
      worst = std::max(worst, static_cast<double>(std::abs(got.grads[i][j] - want.grads[i][j])));
      scale = std::max(scale, static_cast<double>(std::abs(want.grads[i][j])));
    }
    CHECK(worst <= rtol * scale);
  }
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("two Gemma 3 models on two streams at once give the CPU model's loss and LoRA gradients") {
    const TinyStep cpu = tiny_step(qlora::Device::cpu());
    const qlora::Device streams[2] = {qlora::cuda::new_stream_device(), qlora::cuda::new_stream_device()};
    const auto results = qlora::test::run_concurrently(2, [&](int i) { return tiny_step(streams[i]); });
    for (std::size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      check_step(results[i], cpu, 1e-3);  // fp32 throughout; cuBLAS sums in another order
    }
  }
}
