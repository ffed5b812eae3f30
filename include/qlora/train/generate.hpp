// Text generation with a KV cache, as transformers' generate(): the prompt is run once (prefill) with its keys and
// values kept per layer; each new token then runs through the model alone, attending to the cache. Sampling is
// train/sampling.hpp (greedy, temperature, top-k, top-p, seeded); generation stops after max_new_tokens or at a stop
// token (Gemma: <end_of_turn> and <eos>), which is kept in the output as transformers keeps it.
//
// Attention over the cache for the n new queries at absolute positions p = start .. start + n − 1 sees keys
// j ≤ p, and on sliding-window layers only j > p − W: the same visibility as training (ops/attention.hpp), so the
// cached logits equal a full forward pass over the whole sequence (tested). The adapter, when the model has one, is
// applied as in training without dropout. CPU for now (the cached attention is a plain loop over heads).
// GenerationConfig::decode_kernel chooses the one-token passes' products: fp32 (the model's GEMMs, the reference) or
// int8 (packed 4/8-bit weights, llama.cpp's way; nn/decode_weights.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../nn/causal_lm.hpp"
#include "../nn/model.hpp"
#include "sampling.hpp"

namespace qlora {

struct GenerationConfig {
  index_t max_new_tokens = 256;
  SamplingConfig sampling{};
  std::vector<std::int32_t> stop_ids;  // e.g. {<end_of_turn>, <eos>}
  std::function<void(std::int32_t)> on_token;  // called with each new token as soon as it is chosen (streaming)
  DecodeKernel decode_kernel = DecodeKernel::fp32;  // int8: packed weights, as llama.cpp (nn/decode_weights.hpp)
};

struct Generation {
  std::vector<std::int32_t> tokens;  // the new tokens (a final stop token included)
  bool stopped = false;              // ended on a stop token, not on max_new_tokens
  // Time, as llama.cpp reports it: the prompt's one pass (prefill, which gives the first new token's logits), then
  // one pass per further token (decode; sampling included).
  index_t prompt_tokens = 0, decode_passes = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0; }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? static_cast<double>(decode_passes) / decode_seconds : 0; }
};

namespace cpu {
// out[i, h] = Σ_j softmax_j(scale · q[i, h] · k[j, g]) · v[j, g] over visible cache rows j (g = h / (Hq / Hkv)).
// q, out: [n, Hq, D]; k, v: [start + n, Hkv, D] (the cache, new rows included). Every loop runs along D, contiguous:
// the dot products in 8 partial sums and the weighted sum of values as D-long accumulations, which the compiler
// vectorises for any target; heads (and queries) are shared among threads once the work is worth it.
template <class T>
void cached_attention(const T* q, const T* k, const T* v, T* out, index_t n, index_t start, index_t q_heads,
                      index_t kv_heads, index_t head_dim, double scale, index_t window) {
  using C = compute_t<T>;
  const index_t group = q_heads / kv_heads;
  [[maybe_unused]] const index_t work = n * q_heads * (start + n) * head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (work > (1 << 15) && n * q_heads > 1)
  for (index_t i = 0; i < n; ++i)
    for (index_t h = 0; h < q_heads; ++h) {
      const index_t p = start + i, g = h / group;
      const index_t first = window > 0 ? std::max<index_t>(0, p - window + 1) : 0;
      std::vector<C> s(static_cast<std::size_t>(p - first + 1)), acc(static_cast<std::size_t>(head_dim), C(0));
      const T* qi = q + (i * q_heads + h) * head_dim;
      C mx = -INFINITY;
      for (index_t j = first; j <= p; ++j) {
        const T* kj = k + (j * kv_heads + g) * head_dim;
        C part[8] = {};
        index_t d = 0;
        for (; d + 8 <= head_dim; d += 8)
          for (int l = 0; l < 8; ++l) part[l] += convert<C>(qi[d + l]) * convert<C>(kj[d + l]);
        for (; d < head_dim; ++d) part[0] += convert<C>(qi[d]) * convert<C>(kj[d]);
        const C dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        s[static_cast<std::size_t>(j - first)] = dot * static_cast<C>(scale);
        mx = std::max(mx, s[static_cast<std::size_t>(j - first)]);
      }
      C z = 0;
      for (auto& e : s) z += (e = std::exp(e - mx));
      for (index_t j = first; j <= p; ++j) {
        const C w = s[static_cast<std::size_t>(j - first)];
        const T* vj = v + (j * kv_heads + g) * head_dim;
        for (index_t d = 0; d < head_dim; ++d) acc[static_cast<std::size_t>(d)] += w * convert<C>(vj[d]);
      }
      T* oi = out + (i * q_heads + h) * head_dim;
      for (index_t d = 0; d < head_dim; ++d) oi[d] = convert<T>(acc[static_cast<std::size_t>(d)] / z);
    }
}
}  // namespace cpu

// The model's projections and tied LM head packed for DecodeKernel::int8 (nn/decode_weights.hpp): NF4 codes where
// the model computes with NF4 values (an NF4 base, or dense weights holding their NF4 round trip), Q8_0 elsewhere.
template <class Model>
DecodeWeights pack_decode_weights(const Model& model) {
  require(model.device().is_cpu(), "generate", "packed decoding runs on the CPU (model on ", model.device().str(), ")");
  const Gemma3Options& o = model.options();
  DecodeWeights out;
  for (const auto& block : model.blocks())
    block.for_each_projection([&](Projection p, const auto& proj) {
      using W = typename std::remove_cvref_t<decltype(proj.base())>::value_type;
      const auto w = frozen_weight<float>(proj.base());
      const index_t rows = w.size(0), cols = w.size(1);
      if (!packable(cols)) return;
      const bool nf4_values = std::is_same_v<W, NF4> || (DenseElement<W> && o.nf4_values);
      if (nf4_values && o.quant.blocksize % kPackedBlock == 0 && cols % o.quant.blocksize == 0)
        out.set(block.layer(), p, pack_nf4(w.data(), rows, cols, o.quant.blocksize));
      else
        out.set(block.layer(), p, pack_q8_0(w.data(), rows, cols));
    });
  const auto& embed = model.embed_tokens().value();
  if (packable(embed.size(1))) {
    const auto e = frozen_weight<float>(embed);
    out.set_lm_head(pack_q8_0(e.data(), e.size(0), e.size(1)));
  }
  return out;
}

// The keys and values of every layer of `model` for up to `capacity` positions (the model must outlive the cache).
// With DecodeKernel::int8 one-token passes and the LM head run on packed copies of the weights (nn/decode_weights.hpp).
template <class Model>
class KvCache final : public DecodeSession {
  using dims = typename Model::dims;
  using T = typename Model::hidden_type::tensor_type::value_type;
  using attention_type = typename Model::block_type::attention_type;

 public:
  using rows_type = Tensor<T, Dyn, typename dims::kv_heads, typename dims::head_dim>;  // [positions, Hkv, D]
  // kernel int8 packs the model's weights here; several caches can share one packing (the other constructor).
  KvCache(const Model& model, index_t capacity, DecodeKernel kernel = DecodeKernel::fp32)
      : KvCache(model, capacity, kernel == DecodeKernel::int8 ? packed_weights_of(model) : nullptr) {}
  KvCache(const Model& model, index_t capacity, std::shared_ptr<const DecodeWeights> packed)
      : model_(model), capacity_(capacity), packed_(std::move(packed)) {
    const Gemma3RuntimeConfig& c = model.runtime_config();
    for (index_t l = 0; l < c.layers; ++l) {
      k_.push_back(rows_type(typename rows_type::shape_type(capacity, c.kv_heads, c.head_dim)));
      v_.push_back(rows_type(typename rows_type::shape_type(capacity, c.kv_heads, c.head_dim)));
    }
  }
  index_t length() const override { return length_; }
  index_t capacity() const { return capacity_; }
  std::string products() const override { return packed_ ? packed_->describe() : "fp32 (the model's GEMMs)"; }

  // The packing DecodeKernel::int8 uses, made once for a model (fp32 models only).
  static std::shared_ptr<const DecodeWeights> packed_weights_of(const Model& model) {
    require(std::is_same_v<T, float>, "generate", "the int8 decode kernel needs an fp32 model");
    return std::make_shared<const DecodeWeights>(pack_decode_weights(model));
  }

  // Runs `ids` (the next tokens after the cached ones) through the model; returns the fp32 logits of the last one.
  std::vector<float> extend(std::span<const std::int32_t> ids) override {
    const Model& model = model_;
    const auto n = static_cast<index_t>(ids.size());
    require(n > 0, "generate", "no tokens to run");
    require(length_ + n <= capacity_, "generate", "the KV cache holds ", capacity_, " positions; ", length_ + n,
            " needed");
    require(model.device().is_cpu(), "generate", "KV-cache generation runs on the CPU in this version (model on ",
            model.device().str(), ")");
    NoGrad no_grad;
    std::vector<std::int32_t> pos(ids.size());
    for (index_t i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(length_ + i);
    const auto tokens = Tensor<std::int32_t, Dyn>::from(std::vector<std::int32_t>(ids.begin(), ids.end()), n);
    const auto positions = Tensor<std::int32_t, Dyn>::from(pos, n);
    typename Model::hidden_type x = embedding(tokens, model.embed_tokens());
    ForwardPass pass{};
    if (n == 1 && packed_) pass.packed = packed_.get();  // a prompt keeps the training GEMMs (compute-bound)
    const Gemma3RuntimeConfig& c = model.runtime_config();
    for (const auto& block : model.blocks()) {
      const auto t = block.qkv(x, positions, pass);
      const auto l = static_cast<std::size_t>(block.layer());
      const index_t row = c.kv_dim();
      std::copy_n(t.k.value().data(), n * row, k_[l].data() + length_ * row);
      std::copy_n(t.v.value().data(), n * row, v_[l].data() + length_ * row);
      typename attention_type::tensor_type a(typename attention_type::tensor_type::shape_type(n, c.q_dim()),
                                             model.device());  // o_proj then runs on the model's CPU GEMM
      const AttentionParams ap = block.attention_params();
      cpu::cached_attention(t.q.value().data(), k_[l].data(), v_[l].data(), a.data(), n, length_, c.heads, c.kv_heads,
                            c.head_dim, ap.scale, ap.window);
      x = block.finish(x, attention_type(a), pass);
    }
    length_ += n;
    const auto h = rmsnorm(x, model.norm(), c.rms_norm_eps).value();
    if (const PackedMatrix* head = packed_ ? packed_->lm_head() : nullptr) {
      std::vector<float> logits(static_cast<std::size_t>(head->rows));
      if constexpr (std::is_same_v<T, float>) packed_gemv(*head, h.data() + (n - 1) * c.hidden, 1, logits.data());
      return logits;
    }
    const auto logits = model.logits_of(h.slice(n - 1, n));
    return logits.to_vector();
  }

 private:
  const Model& model_;
  index_t capacity_, length_ = 0;
  std::vector<rows_type> k_, v_;
  std::shared_ptr<const DecodeWeights> packed_;
};

// Generates after `prompt` (which should start with <bos>), extending `session` (an empty KV cache with room for
// the prompt and max_new_tokens).
inline Generation generate(DecodeSession& session, const std::vector<std::int32_t>& prompt,
                           const GenerationConfig& config) {
  validate(config.sampling);
  require(!prompt.empty(), "generate", "the prompt has no tokens");
  require(config.max_new_tokens >= 0, "generate", "max_new_tokens must not be negative");
  Generation out;
  if (config.max_new_tokens == 0) return out;
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  std::vector<float> logits = session.extend(prompt);
  out.prompt_tokens = static_cast<index_t>(prompt.size());
  out.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
  start = clock::now();
  for (index_t step = 0; step < config.max_new_tokens; ++step) {
    const std::int32_t next = sample_next(logits, config.sampling, static_cast<std::uint64_t>(session.length()));
    out.tokens.push_back(next);
    if (config.on_token) {  // the printing is not decode time
      out.decode_seconds += std::chrono::duration<double>(clock::now() - start).count();
      config.on_token(next);
      start = clock::now();
    }
    if (std::find(config.stop_ids.begin(), config.stop_ids.end(), next) != config.stop_ids.end()) {
      out.stopped = true;
      break;
    }
    if (step + 1 < config.max_new_tokens) {
      logits = session.extend(std::span<const std::int32_t>(&next, 1));
      ++out.decode_passes;
    }
  }
  out.decode_seconds += std::chrono::duration<double>(clock::now() - start).count();
  return out;
}

// The same with a model: a CausalLM (any size, chosen at run time) or a static model type (nn/model.hpp).
inline Generation generate(const CausalLM& model, const std::vector<std::int32_t>& prompt,
                           const GenerationConfig& config) {
  const auto session = model.decoder(static_cast<index_t>(prompt.size()) + std::max<index_t>(config.max_new_tokens, 0),
                                     config.decode_kernel);
  return generate(*session, prompt, config);
}
template <class Model>
  requires(!std::is_base_of_v<CausalLM, Model> && !std::is_base_of_v<DecodeSession, Model>)
Generation generate(const Model& model, const std::vector<std::int32_t>& prompt, const GenerationConfig& config) {
  KvCache<Model> cache(model, static_cast<index_t>(prompt.size()) + std::max<index_t>(config.max_new_tokens, 0),
                       config.decode_kernel);
  return generate(cache, prompt, config);
}

}  // namespace qlora
