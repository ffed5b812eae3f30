// Gemma 4 text model: fp32 logits of tiny random checkpoints that transformers wrote (tests/golden/gemma4_model.py:
// PLE, KV sharing with the double-wide MLP, keys = values, the mixture-of-experts block) against transformers' own logits; two sequences packed in
// one row give each one's logits; the loss takes the capped logits; LoRA adapts only the projections a layer has;
// NF4 computes with the NF4 values; the loss passes an fp64 gradcheck for LoRA matrices whose gradient runs through
// KV sharing (a producer's k_proj and v_proj, read by later layers) and through keys = values; a wrong tensor shape, a
// missing tensor and an out-of-range token are refused by name. Gradient checkpointing gives the loss and LoRA
// gradients of the run without it, also where layers reuse another layer's keys and values.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include "support/check.hpp"
#include "support/golden.hpp"
#include "support/lora.hpp"

#include <qlora/nn/adapter_io.hpp>
#include <qlora/nn/gemma4.hpp>
#include <qlora/nn/gemma4_merge.hpp>

using namespace qlora;

namespace {
const std::string kGemma4Variants[] = {"dense_ple", "kv_shared", "k_eq_v", "moe"};

std::filesystem::path gemma4_folder(const std::string& variant) {
  return std::filesystem::path(QLORA_TEST_DATA_DIR) / "gemma4_model" / variant;
}

std::vector<std::int32_t> gemma4_ids(const test::GoldenSet& golden, int i) {
  return golden.ints("ids_" + std::to_string(i)).values;
}

// Two sequences in one packed row: segment ids 1 and 2, positions restarting at 0.
// Every LoRA B of `model` filled with uniform values in [-amplitude/2, amplitude/2) from a seeded LCG (B = 0, as
// initialised, would leave A without a gradient and the adapter without an effect).
template <class Model>
void randomise_lora_b(const Model& model, std::uint64_t state, double amplitude) {
  model.for_each_lora([&](index_t, Projection, const auto& l) {
    for (index_t i = 0; i < l.lora_b().numel(); ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      using V = std::remove_reference_t<decltype(l.lora_b().value().data()[i])>;
      l.lora_b().value().data()[i] = static_cast<V>(amplitude * (static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5));
    }
  });
}

ModelInput gemma4_packed(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  std::vector<std::int32_t> ids = a, pos, seg;
  ids.insert(ids.end(), b.begin(), b.end());
  for (std::size_t i = 0; i < a.size(); ++i) pos.push_back(static_cast<std::int32_t>(i)), seg.push_back(1);
  for (std::size_t i = 0; i < b.size(); ++i) pos.push_back(static_cast<std::int32_t>(i)), seg.push_back(2);
  std::vector<std::int32_t> labels(ids.size(), kIgnoreIndex);
  for (std::size_t i = 0; i + 1 < a.size(); ++i) labels[i] = a[i + 1];
  for (std::size_t i = 0; i + 1 < b.size(); ++i) labels[a.size() + i] = b[i + 1];
  const auto n = static_cast<index_t>(ids.size());
  ModelInput in;
  in.tokens = Tensor<std::int32_t, Dyn>::from(ids, n);
  in.positions = Tensor<std::int32_t, Dyn>::from(pos, n);
  in.segment_ids = Tensor<std::int32_t, Dyn>::from(seg, n);
  in.labels = Tensor<std::int32_t, Dyn>::from(labels, n);
  in.label_tokens = static_cast<long>(a.size() + b.size() - 2);
  return in;
}
}  // namespace

TEST_SUITE("nn") {
  // The math, exactly: qlora in fp64 against transformers in fp64 on the same weights (tests/golden/gemma4_model.py
  // keeps transformers' norms, RoPE and attention in fp64 for this).
  TEST_CASE("Gemma 4 fp64 logits equal transformers' fp64 logits for PLE, KV sharing with double-wide MLP, keys = values") {
    const test::GoldenSet golden("gemma4_model");
    for (const std::string& variant : kGemma4Variants) {
      CAPTURE(variant);
      const Gemma4<double, double> model(Gemma4WeightSource::open(gemma4_folder(variant)));
      const double cap = model.runtime_config().final_logit_softcap;
      for (int i = 0; i < 2; ++i) {
        const auto want = golden.doubles(variant + "_logits64_" + std::to_string(i));
        NoGrad no_grad;
        const auto h = model.hidden_states(model_input(gemma4_ids(golden, i))).value();
        const auto z = matmul<Transpose::no, Transpose::yes>(h, model.embed_tokens().value());  // fp64 logits
        REQUIRE(z.numel() == want.numel());
        double err = 0;
        for (index_t j = 0; j < z.numel(); ++j)
          err = std::max(err, std::abs(cap * std::tanh(z.data()[j] / cap) - want.values[static_cast<std::size_t>(j)]));
        MESSAGE(variant, " sequence ", i, " (fp64): max |logit error| ", err);
        CHECK(err <= 1e-12);
      }
    }
  }

  // fp32 on both sides: summation orders differ, and these random models amplify rounding (transformers' own fp32
  // logits are up to 1.3e-5 from its fp64 ones): stated 2e-5 relative to the logits' range, with the fp64 test above
  // showing the math is the same.
  TEST_CASE("Gemma 4 fp32 logits equal transformers' fp32 logits within fp32 rounding") {
    const test::GoldenSet golden("gemma4_model");
    for (const std::string& variant : kGemma4Variants) {
      CAPTURE(variant);
      const Gemma4<float, float> model(Gemma4WeightSource::open(gemma4_folder(variant)));
      for (int i = 0; i < 2; ++i) {
        const auto want = golden.floats(variant + "_logits_" + std::to_string(i));
        const auto got = model.logits(model_input(gemma4_ids(golden, i)));
        REQUIRE(got.numel() == want.numel());
        double range = 0, err = 0;
        for (index_t j = 0; j < got.numel(); ++j) {
          range = std::max(range, std::abs(static_cast<double>(want.values[static_cast<std::size_t>(j)])));
          err = std::max(err, std::abs(static_cast<double>(got.data()[j]) - want.values[static_cast<std::size_t>(j)]));
        }
        MESSAGE(variant, " sequence ", i, ": max |logit error| ", err, " of max |logit| ", range);
        CHECK(err <= 2e-5 * range);
        CHECK(range <= golden.params(variant).at("softcap").get<double>());  // the cap applies
        CHECK(range > 1.0);                                                    // and the logits are not trivial
      }
    }
  }

  TEST_CASE("Gemma 4 packed sequences give each sequence's logits; the loss takes the capped logits") {
    const test::GoldenSet golden("gemma4_model");
    const Gemma4<float, float> model(Gemma4WeightSource::open(gemma4_folder("kv_shared")));
    const auto a = gemma4_ids(golden, 0), b = gemma4_ids(golden, 1);
    const ModelInput in = gemma4_packed(a, b);
    const auto packed = model.logits(in);
    const auto la = golden.floats("kv_shared_logits_0"), lb = golden.floats("kv_shared_logits_1");
    const index_t vocab = packed.size(1), na = static_cast<index_t>(a.size());
    double err = 0, loss = 0;
    for (index_t t = 0; t < packed.size(0); ++t) {
      const auto& want = t < na ? la : lb;
      const index_t row = t < na ? t : t - na;
      double m = -1e30, s = 0;
      for (index_t v = 0; v < vocab; ++v) {
        const double z = want.values[static_cast<std::size_t>(row * vocab + v)];
        err = std::max(err, std::abs(static_cast<double>(packed(t, v)) - z));
        m = std::max(m, z);
      }
      for (index_t v = 0; v < vocab; ++v) s += std::exp(want.values[static_cast<std::size_t>(row * vocab + v)] - m);
      if (in.labels(t) != kIgnoreIndex)
        loss += m + std::log(s) - want.values[static_cast<std::size_t>(row * vocab + in.labels(t))];
    }
    CHECK(err < 5e-5);
    const auto sum = model.loss_sum(in);
    CHECK(sum.count == in.label_tokens);
    CHECK(static_cast<double>(sum.sum.value().data()[0]) == doctest::Approx(loss).epsilon(1e-5));
  }

  TEST_CASE("Gemma 4 LoRA adapts the projections each layer has, and gradients reach the producer through its consumers") {
    const Gemma3Options options = test::lora_options(2, all_linear_targets(), 4);
    const Gemma4<float, float> model(Gemma4WeightSource::open(gemma4_folder("kv_shared")), options);
    // 8 layers × 7 projections, minus k and v on the 3 reusing layers
    CHECK(model.lora_parameters().size() == 2 * (8 * 7 - 3 * 2));
    for (const auto& p : model.lora_parameters()) CHECK(p.name().find("layers.5.self_attn.k_proj") == std::string::npos);
    // B starts at zero, so the adapted model equals the base; make B nonzero and check the producer's k_proj learns
    // from the loss of every layer after it (layer 4 stores keys for layer 7)
    const test::GoldenSet golden("gemma4_model");
    const ModelInput in = gemma4_packed(gemma4_ids(golden, 0), gemma4_ids(golden, 1));
    for (const auto& p : model.lora_parameters())
      if (p.name().find("lora_B") != std::string::npos)
        for (index_t i = 0; i < p.numel(); ++i) p.value().data()[i] = 0.01f * static_cast<float>(i % 7);
    const auto loss = model.loss_sum(in, ForwardPass{true, false, RandomStream{1, 0}});
    backward(loss.sum);
    bool producer_k_grad = false;
    for (const auto& p : model.lora_parameters())
      if (p.name().find("layers.4.self_attn.k_proj.lora_A") != std::string::npos) {
        double norm = 0;
        for (index_t i = 0; i < p.grad().numel(); ++i) norm += std::abs(p.grad().data()[i]);
        producer_k_grad = norm > 0;
      }
    CHECK(producer_k_grad);
  }

  // Finite differences in fp64 through the whole model: a producer's keys and values reach the layers that reuse
  // them, and on k = v layers k_proj feeds both keys and values, so these gradients are sums over several paths.
  TEST_CASE("Gemma 4's loss passes gradcheck for LoRA matrices on KV-sharing producers, consumers and k = v layers") {
    const test::GoldenSet golden("gemma4_model");
    const Gemma3Options options = test::lora_options(2, all_linear_targets(), 4);
    const ModelInput in = gemma4_packed(gemma4_ids(golden, 0), {2, 33, 9, 70});
    for (const std::string variant : {"kv_shared", "k_eq_v", "moe"}) {
      CAPTURE(variant);
      const Gemma4<double, double> model(Gemma4WeightSource::open(gemma4_folder(variant)), options);
      randomise_lora_b(model, 7, 0.3);
      const auto& blocks = model.blocks();
      auto loss = [&](const auto&...) { return model.loss_sum(in).sum; };
      if (variant == "kv_shared") {  // layer 4 stores the full layers' k, v for layer 7; layer 3 the sliding ones
        QLORA_CHECK_GRADIENTS(loss, blocks[4].k_lora()->lora_a(), blocks[3].v_lora()->lora_b(),
                              blocks[7].q_lora()->lora_a(), blocks[6].down_lora()->lora_b());
      } else if (variant == "moe") {  // through layer 0's router and experts (both read x after attention)
        QLORA_CHECK_GRADIENTS(loss, blocks[0].q_lora()->lora_a(), blocks[0].o_lora()->lora_b(),
                              blocks[2].gate_lora()->lora_a());
      } else {  // layer 5 is full with k = v: no v_proj
        CHECK(blocks[5].v_lora() == nullptr);
        QLORA_CHECK_GRADIENTS(loss, blocks[5].k_lora()->lora_a(), blocks[5].k_lora()->lora_b(),
                              blocks[4].v_lora()->lora_a());
      }
    }
  }

  TEST_CASE("Gemma 4 on NF4 weights computes with the NF4 values of every projection") {
    const test::GoldenSet golden("gemma4_model");
    const auto src = Gemma4WeightSource::open(gemma4_folder("dense_ple"));
    Gemma3Options dequantized;
    dequantized.nf4_values = true;  // the same NF4 round trip, held as fp32
    const Gemma4<float, NF4> nf4(src);
    const Gemma4<float, float> values(src, dequantized), fp32(src);
    const auto ids = gemma4_ids(golden, 0);
    const auto a = nf4.logits(model_input(ids)), b = values.logits(model_input(ids)), c = fp32.logits(model_input(ids));
    double same = 0, moved = 0;
    for (index_t i = 0; i < a.numel(); ++i) {
      same = std::max(same, std::abs(static_cast<double>(a.data()[i] - b.data()[i])));
      moved = std::max(moved, std::abs(static_cast<double>(a.data()[i] - c.data()[i])));
    }
    MESSAGE("NF4 vs its dequantized values: ", same, "; vs the fp32 checkpoint: ", moved);
    CHECK(same < 1e-4);
    CHECK(moved > 100 * same);  // quantization is not a no-op here
  }

  // Checkpointing keeps only each layer's input (and a producer's keys and values) and recomputes the rest in
  // backward: a consumer's recomputation must read the producer's keys and values, and their gradients must reach the
  // producer's k_proj / v_proj from every layer that read them. fp64, dropout on (its masks must be recomputed alike).
  TEST_CASE("Gemma 4 with gradient checkpointing gives the loss and LoRA gradients of the run without it") {
    const test::GoldenSet golden("gemma4_model");
    const Gemma3Options options = test::lora_options(2, all_linear_targets(), 4);
    const ModelInput in = gemma4_packed(gemma4_ids(golden, 0), {2, 33, 9, 70});
    for (const std::string& variant : kGemma4Variants) {
      CAPTURE(variant);
      const Gemma4<double, double> model(Gemma4WeightSource::open(gemma4_folder(variant)), options);
      randomise_lora_b(model, 11, 0.3);
      auto run = [&](bool checkpointing) {
        model.for_each_lora([](index_t, Projection, const auto& l) {
          l.lora_a().zero_grad();
          l.lora_b().zero_grad();
        });
        const auto loss = model.loss_sum(in, ForwardPass{true, checkpointing, RandomStream{5, 1}});
        backward(loss.sum);
        std::vector<std::vector<double>> grads;
        model.for_each_lora([&](index_t, Projection, const auto& l) {
          for (const auto* v : {&l.lora_a(), &l.lora_b()})
            grads.emplace_back(v->grad().data(), v->grad().data() + v->grad().numel());
        });
        return std::pair{loss.sum.value().item(), grads};
      };
      const auto [plain_loss, plain] = run(false);
      const auto [ckpt_loss, ckpt] = run(true);
      CHECK(ckpt_loss == doctest::Approx(plain_loss).epsilon(1e-13));
      REQUIRE(plain.size() == ckpt.size());
      double worst = 0, scale = 0;
      std::size_t nonzero = 0;
      for (std::size_t i = 0; i < plain.size(); ++i)
        for (std::size_t j = 0; j < plain[i].size(); ++j) {
          worst = std::max(worst, std::abs(plain[i][j] - ckpt[i][j]));
          scale = std::max(scale, std::abs(plain[i][j]));
          nonzero += plain[i][j] != 0;
        }
      MESSAGE(variant, ": largest gradient difference ", worst, " of ", scale);
      CHECK(nonzero > 0);
      CHECK(worst <= 1e-12 * scale);
    }
  }

  // merge: W + s·B·A written into a copy of every tensor; the merged folder without LoRA computes what the base with
  // the adapter computes (KV-sharing and MoE checkpoints: projections that some layers lack, 3-D expert tensors).
  TEST_CASE("a merged Gemma 4 folder gives the logits of its base with the adapter") {
    const test::GoldenSet golden("gemma4_model");
    const Gemma3Options options = test::lora_options(2, all_linear_targets(), 4);
    for (const std::string variant : {"kv_shared", "moe"}) {
      CAPTURE(variant);
      const auto src = Gemma4WeightSource::open(gemma4_folder(variant));
      const Gemma4<float, float> model(src, options);
      randomise_lora_b(model, 5, 0.2);
      const auto dir = std::filesystem::temp_directory_path() / ("qlora_gemma4_merge_" + variant);
      std::filesystem::remove_all(dir);
      save_adapter(model, dir / "adapter", "base");
      const peft::Adapter adapter = peft::load_adapter(dir / "adapter");
      save_merged_gemma4(src, &adapter, (dir / "adapter").string(), dir / "merged");
      const Gemma4<float, float> merged(Gemma4WeightSource::open(dir / "merged"));
      const Gemma4<float, float> base(src);
      const auto ids = gemma4_ids(golden, 0);
      const auto want = model.logits(model_input(ids)), got = merged.logits(model_input(ids)),
                 plain = base.logits(model_input(ids));
      double err = 0, moved = 0;
      for (index_t i = 0; i < want.numel(); ++i) {
        err = std::max(err, std::abs(static_cast<double>(want.data()[i] - got.data()[i])));
        moved = std::max(moved, std::abs(static_cast<double>(want.data()[i] - plain.data()[i])));
      }
      MESSAGE(variant, ": merged vs base + adapter ", err, "; the adapter moves the logits by ", moved);
      CHECK(err < 2e-5);
      CHECK(moved > 1000 * err);
      // every tensor of the source is in the merged file, with its shape
      const SafetensorsCheckpoint out(dir / "merged");
      CHECK(out.names() == src.checkpoint().names());
      for (const auto& name : out.names()) CHECK(out.info(name).shape == src.checkpoint().info(name).shape);
      std::filesystem::remove_all(dir);
    }
  }

  TEST_CASE("Gemma 4 refuses a tensor of the wrong shape, a missing tensor and an out-of-range token") {
    const auto src = Gemma4WeightSource::open(gemma4_folder("dense_ple"));
    CHECK_THROWS_WITH_AS(src.read<float>("layers.0.self_attn.q_proj.weight", 16, 32),
                         doctest::Contains("tensor model.layers.0.self_attn.q_proj.weight has shape [32, 32], the "
                                           "configuration gives [16, 32]"),
                         Error);
    CHECK_THROWS_WITH_AS(src.read<float>("layers.0.self_attn.v_norm.weight", 16),
                         doctest::Contains("tensor layers.0.self_attn.v_norm.weight: not in the checkpoint"), Error);
    CHECK_THROWS_WITH_AS(Gemma4WeightSource::open(gemma4_folder("no_such_variant")),
                         doctest::Contains("no such file or folder"), Error);
    const Gemma4<float, float> model(src);
    CHECK_THROWS_WITH_AS(model.logits(model_input(std::vector<std::int32_t>{2, 500})),
                         doctest::Contains("500"), Error);
  }
}
