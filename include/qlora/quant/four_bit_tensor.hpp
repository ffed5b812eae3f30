// Tensor<NF4, Rows, Cols> and Tensor<FP4, Rows, Cols>: a frozen weight [rows, cols] stored as bitsandbytes 4-bit
// blocks (quant/nf4.hpp), on the CPU or a GPU.
//
//   auto w4 = Tensor<NF4, Dim<2048>, Dim<640>>::quantize(w);        // blocks of 64, double-quantized absmax
//   auto w  = dequantize<bf16>(w4);                                 // Tensor<bf16, Dim<2048>, Dim<640>>
//   w4.storage_bytes(), w4.bytes_per_parameter()                    // the honest byte count
//
// The packed codes live on the tensor's device; so do the statistics, in the form bitsandbytes keeps them (uint8
// codes + nested absmax + offset when double-quantized, else float32 absmax). A host copy of the statistics is kept
// too (a few bytes per 64 weights) for the CPU path and for writing files. Dequantization runs where the data is
// (cuda/nf4.cuh on a GPU) and is exact: the same float32 products as bitsandbytes.
#pragma once

#include <algorithm>
#include <string_view>
#include <type_traits>

#include "../core/tensor.hpp"
#include "nf4.hpp"

#if defined(__CUDACC__)
#include "../cuda/nf4.cuh"
#endif

namespace qlora {

struct NF4 {
  static constexpr FourBitType type = FourBitType::nf4;
  static constexpr std::string_view name = "nf4";
};
struct FP4 {
  static constexpr FourBitType type = FourBitType::fp4;
  static constexpr std::string_view name = "fp4";
};
template <class Q>
concept FourBitElement = std::is_same_v<Q, NF4> || std::is_same_v<Q, FP4>;

struct FourBitOptions {
  index_t blocksize = 64;     // bnb_4bit_blocksize
  bool double_quant = true;   // bnb_4bit_use_double_quant / compress_statistics
};

// The statistics of a 4-bit tensor as they sit on its device.
struct FourBitDeviceState {
  Tensor<float, Dyn> absmax;             // [blocks] when not double-quantized
  Tensor<std::uint8_t, Dyn> codes;       // [blocks] when double-quantized
  Tensor<float, Dyn> nested_absmax;      // [ceil(blocks / 256)]
  Tensor<float, Dim<256>> dynamic_code;  // the signed dynamic map the codes index
};

template <class Q, class Rows, class Cols>
  requires FourBitElement<Q>
class Tensor<Q, Rows, Cols> {
 public:
  using value_type = Q;
  using shape_type = Shape<Rows, Cols>;
  static constexpr int rank = 2;

  Tensor() = default;

  // Quantizes a CPU fp32 weight exactly as bitsandbytes.functional.quantize_4bit does on the CPU.
  static Tensor quantize(const Tensor<float, Rows, Cols>& w, FourBitOptions options = {}) {
    if (!w.device().is_cpu()) fail(Q::name.data(), "quantize: the weight must be on the CPU (move the result with to())");
    const std::vector<float> values = w.to_vector();
    Quantized4bit q = quantize_4bit(values, Q::type, options.blocksize, options.double_quant);
    return Tensor(w.shape(), std::move(q), Device::cpu());
  }
  // A 4-bit tensor from stored codes and statistics (e.g. read from a bitsandbytes safetensors file).
  static Tensor from_quantized(const shape_type& shape, Quantized4bit q) {
    if (q.state.type != Q::type) fail(Q::name.data(), "from_quantized: the state holds another 4-bit type");
    if (q.state.numel != shape.numel())
      fail(Q::name.data(), "from_quantized: ", q.state.numel, " values for shape ", shape.str());
    return Tensor(shape, std::move(q), Device::cpu());
  }

  // A 4-bit tensor whose packed codes already sit on a device (made by quantize() from a GPU weight).
  static Tensor from_device_parts(const shape_type& shape, Tensor<std::uint8_t, Dyn> packed, QuantState4bit state) {
    if (packed.numel() != four_bit_packed_bytes(shape.numel()))
      fail(Q::name.data(), "from_device_parts: ", packed.numel(), " packed bytes for shape ", shape.str());
    Tensor t;
    t.shape_ = shape;
    t.host_.state = std::move(state);
    t.stats_ = upload(t.host_.state, packed.device());
    t.packed_ = std::move(packed);
    return t;
  }

  const shape_type& shape() const { return shape_; }
  index_t size(int axis) const { return shape_[axis]; }
  index_t numel() const { return shape_.numel(); }
  Device device() const { return packed_.device(); }
  bool defined() const { return packed_.defined(); }
  const QuantState4bit& state() const { return host_.state; }
  const Tensor<std::uint8_t, Dyn>& packed() const { return packed_; }  // [(numel + 1) / 2], on device()
  const FourBitDeviceState& device_state() const { return stats_; }

  // Bytes of codes and statistics (not counting the shared code tables).
  index_t storage_bytes() const {
    return four_bit_storage_bytes(numel(), host_.state.blocksize, host_.state.nested.has_value());
  }
  double bytes_per_parameter() const {
    return four_bit_bytes_per_parameter(numel(), host_.state.blocksize, host_.state.nested.has_value());
  }

  // On `target`: itself when it lives there already (with the same GEMM settings), else a copy.
  Tensor on(Device target) const {
    if (device().same_settings(target)) return *this;
    return to(target);
  }
  Tensor to(Device target) const {
    Tensor out = *this;
    out.packed_ = packed_.to(target);
    out.stats_ = upload(host_.state, target);
    return out;
  }

 private:
  Tensor(const shape_type& shape, Quantized4bit q, Device device) : shape_(shape) {
    host_.state = std::move(q.state);
    packed_ = Tensor<std::uint8_t, Dyn>::from(q.packed, static_cast<index_t>(q.packed.size()));
    stats_ = upload(host_.state, Device::cpu());
    *this = on(device);
  }

  static FourBitDeviceState upload(const QuantState4bit& s, Device target) {
    FourBitDeviceState d;
    auto put = [&](const auto& values) {
      using V = typename std::decay_t<decltype(values)>::value_type;
      auto t = Tensor<V, Dyn>::from(values, static_cast<index_t>(values.size()));
      return t.on(target);
    };
    if (s.nested) {
      d.codes = put(s.nested->codes);
      d.nested_absmax = put(s.nested->absmax);
      const DynamicMap map = create_dynamic_map(true);
      auto code = Tensor<float, Dim<256>>::from(std::vector<float>(map.begin(), map.end()));
      d.dynamic_code = code.on(target);
    } else {
      d.absmax = put(s.absmax);
    }
    return d;
  }

  struct HostState {
    QuantState4bit state;
  };
  shape_type shape_{std::array<index_t, 2>{(Rows::is_static ? Rows::value : 0), (Cols::is_static ? Cols::value : 0)}};
  Tensor<std::uint8_t, Dyn> packed_;
  FourBitDeviceState stats_;
  HostState host_;
};

QLORA_DISPATCH_BEGIN

// Writes the dense values of `w` into `out` (same element count, same device), converted to T.
template <class Q, class Rows, class Cols, class T, class... Ds>
  requires FourBitElement<Q>
void dequantize_into(const Tensor<Q, Rows, Cols>& w, const Tensor<T, Ds...>& out) {
  if (out.numel() != w.numel()) fail(Q::name.data(), "dequantize_into: ", out.shape().str(), " for ", w.shape().str());
  if (!(out.device() == w.device())) fail(Q::name.data(), "dequantize_into: destination on another device");
  const QuantState4bit& s = w.state();
  if (w.device().is_cpu()) {
    const std::vector<float> absmax = four_bit_absmax(s);
    dequantize_4bit(w.packed().data(), w.numel(), Q::type, s.blocksize, absmax.data(), out.data());
    return;
  }
  QLORA_ON_CUDA(Q::name.data(), w.device(), const FourBitDeviceState& d = w.device_state();
                cuda::FourBitDequantParams p;
                p.packed = w.packed().data();
                p.numel = w.numel();
                p.type = Q::type;
                p.blocksize = s.blocksize;
                p.absmax = d.absmax.data();
                p.codes = d.codes.data();
                p.nested_absmax = d.nested_absmax.data();
                p.dynamic_code = d.dynamic_code.data();
                p.offset = s.nested ? s.nested->offset : 0.0f;
                cuda::dequantize_4bit(p, out.data(), w.device()));
}

// bitsandbytes' quantize_4bit of a weight on the CPU or a GPU; the result lives on the weight's device. On a GPU
// the codes and absmax come from cuda/nf4.cuh (same rules as the CPU, so the same bytes); the double quantization
// of the absmax (a few values per 64 weights) runs on the host, where torch's float32 mean is reproduced.
template <class Q, class Rows, class Cols>
  requires FourBitElement<Q>
Tensor<Q, Rows, Cols> quantize(const Tensor<float, Rows, Cols>& w, FourBitOptions options = {}) {
  if (w.device().is_cpu()) return Tensor<Q, Rows, Cols>::quantize(w, options);
  detail::check_four_bit_blocksize(options.blocksize);
  const index_t n = w.numel();
  QuantState4bit state;
  state.type = Q::type;
  state.blocksize = options.blocksize;
  state.numel = n;
  auto packed = Tensor<std::uint8_t, Dyn>::zeros_on(w.device(), four_bit_packed_bytes(n));
  auto absmax = Tensor<float, Dyn>::zeros_on(w.device(), state.blocks());
  QLORA_ON_CUDA(Q::name.data(), w.device(),
                cuda::quantize_4bit(w.data(), n, Q::type, options.blocksize, packed.data(), absmax.data(),
                                    w.device()));
  std::vector<float> host_absmax = absmax.to_vector();  // waits for the kernel
  if (options.double_quant) state.nested = double_quantize_absmax(host_absmax);
  else state.absmax = std::move(host_absmax);
  return Tensor<Q, Rows, Cols>::from_device_parts(w.shape(), std::move(packed), std::move(state));
}

// The dense weight in T (fp32, bf16, fp64...), on the 4-bit tensor's device.
template <class T, class Q, class Rows, class Cols>
  requires FourBitElement<Q>
Tensor<T, Rows, Cols> dequantize(const Tensor<Q, Rows, Cols>& w) {
  Tensor<T, Rows, Cols> out(w.shape(), w.device(), uninitialized);  // every element is written
  dequantize_into(w, out);
  return out;
}

// linear()'s view of a 4-bit base weight: dequantized into the compute type for each use (ops/linear.hpp).
template <class T, class Q, class Out, class In>
  requires FourBitElement<Q>
Tensor<T, Out, In> frozen_weight(const Tensor<Q, Out, In>& w) {
  return dequantize<T>(w);
}

QLORA_DISPATCH_END
}  // namespace qlora
