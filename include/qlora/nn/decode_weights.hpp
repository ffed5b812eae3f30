// DecodeWeights: a model's frozen projections and tied LM head packed for one-token passes (ops/packed_gemv.hpp),
// as llama.cpp decodes: each token then reads 4-bit (NF4 base) or 8-bit blocks instead of the fp32 copies the
// training GEMMs use. The decode kernel is a run-time choice of generation (train/generate.hpp):
//
//   DecodeKernel::fp32  the model's own GEMMs: cached logits equal a full forward pass (the reference)
//   DecodeKernel::int8  integer dot products over packed weights, activations rounded to int8 per block of 32:
//                       projections of an NF4 model keep their NF4 codes (4 bits a weight), other dense weights
//                       and the LM head are Q8_0 (8 bits); LoRA adapters stay fp32 beside them
//
// Prefill (several tokens at once) keeps the training GEMMs, which are compute-bound there.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../ops/packed_gemv.hpp"
#include "adapter.hpp"

namespace qlora {

enum class DecodeKernel { fp32, int8 };
inline DecodeKernel decode_kernel_named(std::string_view name) {
  if (name == "int8") return DecodeKernel::int8;
  if (name == "fp32") return DecodeKernel::fp32;
  fail("generate", "unknown decode kernel '", name, "': use int8 or fp32");
}

class DecodeWeights {
 public:
  // The packed weight of a layer's projection, or nullptr where it is not packed (a row not whole blocks of 32).
  const PackedMatrix* find(index_t layer, Projection p) const {
    if (layer < 0 || layer >= static_cast<index_t>(layers_.size())) return nullptr;
    const auto& slot = layers_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(p)];
    return slot ? &*slot : nullptr;
  }
  const PackedMatrix* lm_head() const { return lm_head_ ? &*lm_head_ : nullptr; }
  void set(index_t layer, Projection p, PackedMatrix m) {
    if (layer >= static_cast<index_t>(layers_.size())) layers_.resize(static_cast<std::size_t>(layer + 1));
    layers_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(p)] = std::move(m);
  }
  void set_lm_head(PackedMatrix m) { lm_head_ = std::move(m); }

  // "int8 dot products (avx2): 126 projections NF4 (53 MB), LM head Q8_0 (178 MB)"
  std::string describe() const {
    index_t count = 0, dense = 0;
    std::size_t proj_bytes = 0;
    std::string formats;
    for (const auto& layer : layers_)
      for (const auto& slot : layer) {
        if (!slot) {
          ++dense;
          continue;
        }
        ++count;
        proj_bytes += slot->bytes();
        const std::string f(packed_format_name(slot->format));
        if (formats.find(f) == std::string::npos) formats += (formats.empty() ? "" : "/") + f;
      }
    std::string out = "int8 dot products (" + std::string(packed_kernel_name(packed_gemv_kernel())) + "): " +
                      std::to_string(count) + " projections " + formats + " (" + mb(proj_bytes) + ")";
    if (dense > 0) out += ", " + std::to_string(dense) + " left fp32 (rows not whole blocks of 32)";
    if (lm_head_) out += ", LM head " + std::string(packed_format_name(lm_head_->format)) + " (" + mb(lm_head_->bytes()) + ")";
    return out;
  }

 private:
  static std::string mb(std::size_t bytes) { return std::to_string((bytes + 500000) / 1000000) + " MB"; }
  std::vector<std::array<std::optional<PackedMatrix>, 7>> layers_;
  std::optional<PackedMatrix> lm_head_;
};

}  // namespace qlora
