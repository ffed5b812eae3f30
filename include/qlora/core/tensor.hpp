// Tensor<T, Dims...>: a contiguous, row-major block of T on one device, with its shape partly in the type.
//
//   Tensor<float, Dyn, Dim<640>> x = Tensor<float, Dyn, Dim<640>>::zeros(tokens);   // x: [tokens, 640]
//
// Copies of a Tensor are views sharing storage (like torch.Tensor); `clone()` copies the data. Views along the first
// axis (`x[i]`, `x.slice(b, e)`) and `reshape` share storage too. Element access (`x(i, j)`) is for CPU tensors;
// `to(device)` moves data between the CPU and a GPU. Expressions (`core/expr.hpp`) assign into tensors.
#pragma once

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <type_traits>
#include <vector>

#include "device.hpp"
#include "dtype.hpp"
#include "shape.hpp"

namespace qlora {

template <class T, class... Ds>
class Tensor;

template <class X>
inline constexpr bool is_tensor_v = false;
template <class T, class... Ds>
inline constexpr bool is_tensor_v<Tensor<T, Ds...>> = true;

namespace detail {
template <class T, class First, class... Rest>
struct drop_first {
  using type = Tensor<T, Rest...>;
};
// Every target extent is Dyn or the same static extent: a conversion that cannot fail.
template <class... From>
struct widens_to {
  template <class... To>
  static constexpr bool value = sizeof...(From) == sizeof...(To) && ((!To::is_static || (From::is_static &&
                                                                         From::value == To::value)) && ...);
};
}  // namespace detail

// The tag of a new tensor whose every element its maker writes before anything reads it (an op's result: a GEMM's
// C, an evaluated expression, a dequantized weight): its storage is not zero-filled, which would write it twice.
// Builds with QLORA_POISON_UNINITIALIZED (the sanitizer build, and every build without NDEBUG) fill such CPU storage
// with 0xff bytes instead — NaN for floating types, -1 for integers — so that an element read before it was written
// shows in the results.
struct Uninitialized {};
inline constexpr Uninitialized uninitialized{};

#if !defined(QLORA_POISON_UNINITIALIZED) && !defined(NDEBUG)
#define QLORA_POISON_UNINITIALIZED 1
#endif

template <class T, class... Ds>
class Tensor {
  static_assert(DenseElement<T>, "Tensor<T, ...>: T must be a dense element type (see core/dtype.hpp); "
                                 "quantized types specialise Tensor in quant/");

 public:
  using value_type = T;
  using shape_type = Shape<Ds...>;
  static constexpr int rank = sizeof...(Ds);

  // An undefined tensor (no storage): `defined()` is false.
  Tensor() = default;

  // Allocates zero-filled storage for `shape` on `device`.
  explicit Tensor(const shape_type& shape, Device device = Device::cpu())
      : storage_(allocate(shape, device)), shape_(shape) {
    if (storage_->bytes()) device.allocator().fill_zero(storage_->data(), storage_->bytes());
  }
  // Allocates storage the caller fills whole before reading it (see Uninitialized).
  Tensor(const shape_type& shape, Device device, Uninitialized) : storage_(allocate(shape, device)), shape_(shape) {
#if QLORA_POISON_UNINITIALIZED
    if (storage_->bytes() && device.is_cpu()) std::memset(storage_->data(), 0xff, storage_->bytes());
#endif
  }

  // A view of a tensor whose type fixes fewer extents (e.g. Dim<4> -> Dyn): always valid, so implicit.
  template <class... Es>
    requires(!std::is_same_v<Shape<Es...>, shape_type> && detail::widens_to<Es...>::template value<Ds...>)
  Tensor(const Tensor<T, Es...>& other)  // NOLINT(google-explicit-constructor)
      : storage_(other.storage()), offset_(other.offset()), shape_(other.shape().extents()) {}

  // Zero-filled tensor from every extent or only the dynamic ones: Tensor<float, Dyn, Dim<4>>::zeros(3).
  template <class... Ns>
  static Tensor zeros(Ns... extents) {
    return Tensor(shape_type(extents...));
  }
  template <class... Ns>
  static Tensor zeros_on(Device device, Ns... extents) {
    return Tensor(shape_type(extents...), device);
  }
  template <class... Ns>
  static Tensor full(T value, Ns... extents) {
    Tensor t(shape_type(extents...));
    std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  // CPU tensor holding `values` (row-major), whose count must equal the shape's.
  template <class... Ns>
  static Tensor from(const std::vector<T>& values, Ns... extents) {
    Tensor t(shape_type(extents...));
    if (static_cast<index_t>(values.size()) != t.numel())
      fail("tensor", "from(): ", values.size(), " values for shape ", t.shape().str(), " (", t.numel(), " elements)");
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }

  bool defined() const { return storage_ != nullptr; }
  const shape_type& shape() const { return shape_; }
  index_t size(int axis) const { return shape_[axis]; }
  index_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  T* data() const { return storage_ ? static_cast<T*>(storage_->data()) + offset_ : nullptr; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  index_t offset() const { return offset_; }

  // CPU element access, row-major: x(i, j).
  template <class... Is>
    requires(sizeof...(Is) == rank && (std::is_integral_v<Is> && ...))
  T& operator()(Is... is) const {
    const std::array<index_t, rank> idx = {static_cast<index_t>(is)...};
    index_t flat = 0;
    for (int a = 0; a < rank; ++a) flat = flat * shape_[a] + idx[a];
    return data()[flat];
  }

  // The i-th sub-tensor along the first axis (a view).
  auto operator[](index_t i) const requires(rank >= 1) {
    using Sub = typename detail::drop_first<T, Ds...>::type;
    require(i >= 0 && i < shape_[0], "tensor", "index ", i, " out of range for shape ", shape_.str());
    std::array<index_t, rank - 1> sub{};
    for (int a = 1; a < rank; ++a) sub[a - 1] = shape_[a];
    const index_t stride = rank > 1 ? numel() / std::max<index_t>(shape_[0], 1) : 1;
    return Sub(storage_, offset_ + i * stride, typename Sub::shape_type(sub));
  }

  // Rows [begin, end) along the first axis (a view; the first extent becomes dynamic).
  auto slice(index_t begin, index_t end) const requires(rank >= 1) {
    require(0 <= begin && begin <= end && end <= shape_[0], "tensor", "slice [", begin, ", ", end,
            ") out of range for shape ", shape_.str());
    using Out = typename detail::drop_first<T, Ds...>::type::template prepend_dim<Dyn>;
    std::array<index_t, rank> ext = shape_.extents();
    const index_t stride = shape_[0] ? numel() / shape_[0] : 0;
    ext[0] = end - begin;
    return Out(storage_, offset_ + begin * stride, typename Out::shape_type(ext));
  }

  // The same elements under another shape (a view); the element count must match.
  template <class... Es, class... Ns>
  Tensor<T, Es...> reshape(Ns... extents) const {
    typename Tensor<T, Es...>::shape_type s(extents...);
    require(s.numel() == numel(), "tensor", "reshape from ", shape_.str(), " to ", s.str(),
            " changes the element count");
    return Tensor<T, Es...>(storage_, offset_, s);
  }
  // A view under a type that fixes more extents; the fixed extents are checked at run time.
  template <class... Es>
  Tensor<T, Es...> as() const {
    static_assert(sizeof...(Es) == rank, "as<...>() keeps the rank; use reshape to change it");
    return Tensor<T, Es...>(storage_, offset_, typename Tensor<T, Es...>::shape_type(shape_.extents()));
  }

  // Copies of the data.
  Tensor clone() const { return to(device()); }
  Tensor to(Device target) const {
    Tensor out(storage_, 0, shape_);
    out.storage_ = std::make_shared<Storage>(target, bytes());
    out.offset_ = 0;
    copy_bytes(target, out.data(), device(), data(), bytes());
    return out;
  }
  // This tensor on `target`: itself when it lives there already (with the same CPU / GPU GEMM settings, which the ops
  // reading it take from its device), else a copy.
  Tensor on(Device target) const {
    if (device().same_settings(target)) return *this;
    return to(target);
  }
  std::vector<T> to_vector() const {
    std::vector<T> v(static_cast<std::size_t>(numel()));
    copy_bytes(Device::cpu(), v.data(), device(), data(), bytes());
    return v;
  }
  // The single value of a one-element tensor, on the host.
  T item() const {
    require(numel() == 1, "tensor", "item() of a tensor with ", numel(), " elements");
    return to_vector()[0];
  }
  // Copies `src` (same element count) into this tensor's storage, across devices if needed.
  template <class... Es>
  void copy_from(const Tensor<T, Es...>& src) const {
    require(src.numel() == numel(), "tensor", "copy_from: ", src.shape().str(), " into ", shape_.str());
    copy_bytes(device(), data(), src.device(), src.data(), bytes());
  }
  void fill_zero() const {
    if (bytes()) device().allocator().fill_zero(data(), bytes());
  }

  template <class E>
  Tensor& operator=(const E& expression) requires(!is_tensor_v<E>);  // defined in core/expr.hpp
  Tensor& operator=(const Tensor&) = default;
  Tensor(const Tensor&) = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(Tensor&&) noexcept = default;

  // Raw constructor of views: shares `storage` from element `offset`.
  Tensor(std::shared_ptr<Storage> storage, index_t offset, const shape_type& shape)
      : storage_(std::move(storage)), offset_(offset), shape_(shape) {}

  template <class D>
  using prepend_dim = Tensor<T, D, Ds...>;

 private:
  // Storage for `shape` on `device`, as the allocator hands it out (the constructors fill it, or not).
  static std::shared_ptr<Storage> allocate(const shape_type& shape, const Device& device) {
    return std::make_shared<Storage>(device, static_cast<std::size_t>(shape.numel()) * sizeof(T));
  }
  std::shared_ptr<Storage> storage_;
  index_t offset_ = 0;
  // undefined tensors: static extents as the type says, dynamic ones 0
  shape_type shape_{std::array<index_t, rank>{(Ds::is_static ? Ds::value : index_t{0})...}};
};

// Prints "Tensor<f32>[2, 3] cpu" and the values (at most 8 per row, 8 rows).
template <class T, class... Ds>
std::ostream& operator<<(std::ostream& os, const Tensor<T, Ds...>& t) {
  os << "Tensor<" << dtype_traits<T>::name << ">" << t.shape() << ' ' << t.device();
  if (!t.defined()) return os << " (undefined)";
  const std::vector<T> v = t.to_vector();
  const index_t cols = Tensor<T, Ds...>::rank ? t.size(Tensor<T, Ds...>::rank - 1) : 1;
  const index_t rows = cols ? t.numel() / cols : 0;
  for (index_t r = 0; r < std::min<index_t>(rows, 8); ++r) {
    os << "\n  [";
    for (index_t c = 0; c < std::min<index_t>(cols, 8); ++c)
      os << (c ? ", " : "") << convert<double>(v[static_cast<std::size_t>(r * cols + c)]);
    os << (cols > 8 ? ", ...]" : "]");
  }
  if (rows > 8) os << "\n  ...";
  return os;
}

}  // namespace qlora
