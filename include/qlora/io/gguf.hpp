// GGUF files (ggml / llama.cpp), versions 2 and 3: read memory-mapped with every count, length and offset checked
// against the file before it is used, and written as gguf-py's GGUFWriter writes them.
//
// Layout (little-endian): "GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv_count × (string key, u32 type,
// value) | tensor_count × (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset) | zero padding to
// the alignment (general.alignment, default 32) | tensor data, each tensor at its offset from the data start.
// Dims are ggml order (dims[0] is contiguous): a torch weight [out, in] is stored as [in, out]; read() returns the
// torch order. Errors name the file and the key or tensor: "[gguf] model.gguf: tensor blk.3.attn_q.weight: data runs
// past the end of the file (...)".
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/text.hpp"
#include "../quant/ggml.hpp"
#include "mapped_file.hpp"

namespace qlora {

static_assert(std::endian::native == std::endian::little, "GGUF is read and written little-endian");

// Metadata value types; the numbers are the file's ids and the alternatives' indices in the variants below.
enum class GgufValueType : std::uint32_t { u8, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64 };
inline constexpr std::array<std::string_view, 13> gguf_value_type_names = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

// An array of one element type (arrays may nest: element type `array`).
struct GgufArray {
  using Elements = std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>, std::vector<std::uint16_t>,
                                std::vector<std::int16_t>, std::vector<std::uint32_t>, std::vector<std::int32_t>,
                                std::vector<float>, std::vector<bool>, std::vector<std::string>, std::vector<GgufArray>,
                                std::vector<std::uint64_t>, std::vector<std::int64_t>, std::vector<double>>;
  Elements elements;
  GgufValueType element_type() const { return static_cast<GgufValueType>(elements.index()); }
  std::size_t size() const {
    return std::visit([](const auto& v) { return v.size(); }, elements);
  }
  friend bool operator==(const GgufArray&, const GgufArray&) = default;
};

class GgufValue {
 public:
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                               float, bool, std::string, GgufArray, std::uint64_t, std::int64_t, double>;
  GgufValue() = default;
  // Exactly one of the alternatives (std::uint32_t, float, std::string, ...); a std::vector<T> becomes an array.
  template <class T>
  static GgufValue of(T v) {
    GgufValue out;
    if constexpr (std::is_same_v<T, const char*>)
      out.value = std::string(v);
    else if constexpr (requires { typename T::value_type; } && !std::is_same_v<T, std::string>)
      out.value = GgufArray{GgufArray::Elements(std::in_place_type<T>, std::move(v))};
    else
      out.value.template emplace<T>(std::move(v));
    return out;
  }
  GgufValueType type() const { return static_cast<GgufValueType>(value.index()); }
  // "u32", "string", "array of f32".
  std::string type_name() const {
    std::string s(gguf_value_type_names[value.index()]);
    if (const auto* a = std::get_if<GgufArray>(&value))
      s += " of " + std::string(gguf_value_type_names[a->elements.index()]);
    return s;
  }
  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&value);
  }
  friend bool operator==(const GgufValue&, const GgufValue&) = default;

  Storage value;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<index_t> dims;  // ggml order: dims[0] is the contiguous extent
  std::uint64_t offset = 0;   // from the start of the tensor data
  std::uint64_t bytes = 0;
  index_t numel() const {
    index_t n = 1;
    for (index_t d : dims) n *= d;
    return n;
  }
  // [out, in] for a weight stored as ggml [in, out].
  std::vector<index_t> torch_shape() const { return {dims.rbegin(), dims.rend()}; }
};

namespace detail {
// Bounds-checked reads from the mapped bytes; `where` says what is being read when it runs out.
struct GgufCursor {
  const std::uint8_t* data;
  std::uint64_t size, pos = 0;
  std::uint64_t left() const { return size - pos; }
  template <class T>
  bool read(T& out) {
    if (left() < sizeof(T)) return false;
    std::memcpy(&out, data + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
};
}  // namespace detail

class GgufFile {
 public:
  static constexpr std::uint32_t kDefaultAlignment = 32;
  static constexpr int kMaxDims = 4;           // GGML_MAX_DIMS
  static constexpr std::size_t kMaxName = 63;  // GGML_MAX_NAME - 1 (names are stored NUL-terminated in ggml)
  static constexpr int kMaxArrayDepth = 8;

  explicit GgufFile(const std::filesystem::path& path) : file_(path, "gguf") { parse(); }

  const std::filesystem::path& path() const { return file_.path(); }
  // The tensor bytes read so far leave the resident set (MappedFile::release_pages); later reads map them again.
  void release_pages() const { file_.release_pages(); }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data

  // ---- metadata ----
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }  // file order
  bool contains(std::string_view key) const { return kv_index_.count(std::string(key)) != 0; }
  const GgufValue* find(std::string_view key) const {
    const auto it = kv_index_.find(std::string(key));
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
  }
  const GgufValue& metadata(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) error("key ", key, ": missing");
    return *v;
  }
  template <class T>
  const T& get(std::string_view key) const {
    const GgufValue& v = metadata(key);
    const T* p = v.get_if<T>();
    if (!p)
      error("key ", key, ": is ", v.type_name(), ", not ",
            std::is_same_v<T, GgufArray> ? std::string("an array") : GgufValue::of(T{}).type_name());
    return *p;
  }
  std::uint32_t get_u32(std::string_view key) const { return get<std::uint32_t>(key); }
  std::int32_t get_i32(std::string_view key) const { return get<std::int32_t>(key); }
  std::uint64_t get_u64(std::string_view key) const { return get<std::uint64_t>(key); }
  float get_f32(std::string_view key) const { return get<float>(key); }
  bool get_bool(std::string_view key) const { return get<bool>(key); }
  const std::string& get_string(std::string_view key) const { return get<std::string>(key); }
  template <class T>
  const std::vector<T>& get_array(std::string_view key) const {
    const GgufArray& a = get<GgufArray>(key);
    const auto* p = std::get_if<std::vector<T>>(&a.elements);
    if (!p)
      error("key ", key, ": is ", metadata(key).type_name(), ", not ", GgufValue::of(std::vector<T>{}).type_name());
    return *p;
  }

  // ---- tensors ----
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order
  bool has_tensor(std::string_view name) const { return tensor_index_.count(std::string(name)) != 0; }
  const GgufTensorInfo& info(std::string_view name) const {
    const auto it = tensor_index_.find(std::string(name));
    if (it == tensor_index_.end()) error("tensor ", name, ": not in the file");
    return tensors_[it->second];
  }
  std::span<const std::uint8_t> raw(std::string_view name) const {
    const auto& t = info(name);
    return {file_.data() + data_offset_ + t.offset, static_cast<std::size_t>(t.bytes)};
  }

  // The tensor dequantized to float (then converted to T) in torch order; its shape is checked against the type.
  template <class T, class... Ds>
  Tensor<T, Ds...> read(std::string_view name) const {
    const GgufTensorInfo& t = info(name);
    const auto extents = detail::file_extents<Ds...>("gguf", file_.path(), t.name, t.torch_shape());
    if (!ggml_can_dequantize(t.type))
      error("tensor ", t.name, ": type ", ggml_type_name(t.type),
            " cannot be dequantized (supported: ", ggml_dequantized_types, ")");
    Tensor<T, Ds...> out{typename Tensor<T, Ds...>::shape_type(extents)};
    const index_t row = t.dims.empty() ? 1 : t.dims[0];
    const index_t rows = row ? t.numel() / row : 0;
    const auto& tr = ggml_traits(t.type);
    const std::uint8_t* src = file_.data() + data_offset_ + t.offset;
    const std::size_t row_bytes = static_cast<std::size_t>(row / tr.block_size * tr.type_size);
    T* dst = out.data();
#pragma omp parallel for schedule(static) if (rows * row > (1 << 16))
    for (index_t r = 0; r < rows; ++r) {
      if constexpr (std::is_same_v<T, float>) {
        dequantize_row(t.type, src + r * row_bytes, dst + r * row, row);
      } else {
        std::vector<float> tmp(static_cast<std::size_t>(row));
        dequantize_row(t.type, src + r * row_bytes, tmp.data(), row);
        for (index_t j = 0; j < row; ++j) dst[r * row + j] = convert<T>(tmp[static_cast<std::size_t>(j)]);
      }
    }
    return out;
  }

 private:
  template <class... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail("gguf", file_.path().string(), ": ", shown(parts)...);  // names from the file, printable
  }

  void parse() {
    detail::GgufCursor c{file_.data(), file_.size()};
    char magic[4] = {};
    if (!c.read(magic)) error("file is ", c.size, " bytes, too short for a GGUF header");
    if (std::memcmp(magic, "GGUF", 4) != 0) error("bad magic (not a GGUF file)");
    std::uint64_t n_tensors = 0, n_kv = 0;
    if (!c.read(version_) || !c.read(n_tensors) || !c.read(n_kv))
      error("file is ", c.size, " bytes, too short for a GGUF header");
    if ((version_ & 0xFFFF) == 0 && version_ != 0)
      error("version field ", version_, " is byte-swapped: big-endian GGUF files are not supported");
    if (version_ != 2 && version_ != 3) error("unsupported version ", version_, " (versions 2 and 3 are read)");
    // the smallest key-value is 13 bytes (8 length + 4 type + 1 value), the smallest tensor info 24 bytes
    if (n_kv > c.left() / 13) error("metadata count ", n_kv, " is more than the file can hold");
    if (n_tensors > c.left() / 24) error("tensor count ", n_tensors, " is more than the file can hold");

    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::string key;
      if (!read_string(c, key)) error("key #", i, ": name runs past the end of the file");
      std::uint32_t type = 0;
      if (!c.read(type)) error("key ", key, ": type runs past the end of the file");
      GgufValue v;
      read_value(c, key, type, v.value, 0);
      if (kv_index_.count(key)) error("key ", key, ": appears twice");
      kv_index_.emplace(key, kv_.size());
      kv_.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = find("general.alignment")) {
      const auto* v = a->get_if<std::uint32_t>();
      if (!v) error("key general.alignment: is ", a->type_name(), ", not u32");
      if (*v == 0 || (*v & (*v - 1)) != 0) error("key general.alignment: ", *v, " is not a power of two");
      alignment_ = *v;
    }

    for (std::uint64_t i = 0; i < n_tensors; ++i) tensors_.push_back(read_tensor_info(c, i));
    data_offset_ = c.pos + (alignment_ - c.pos % alignment_) % alignment_;
    const std::uint64_t data_size = data_offset_ <= c.size ? c.size - data_offset_ : 0;
    std::vector<const GgufTensorInfo*> by_offset;
    for (const auto& t : tensors_) {
      if (t.offset > data_size || t.bytes > data_size - t.offset)
        error("tensor ", t.name, ": data runs past the end of the file (offset ", t.offset, " + ", t.bytes,
              " bytes, but the data section holds ", data_size, " bytes)");
      by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (std::size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->bytes)
        error("tensor ", by_offset[i]->name, ": data overlaps tensor ", by_offset[i - 1]->name);
  }

  static bool read_string(detail::GgufCursor& c, std::string& out) {
    std::uint64_t n = 0;
    if (!c.read(n) || n > c.left()) return false;
    out.assign(reinterpret_cast<const char*>(c.data + c.pos), static_cast<std::size_t>(n));
    c.pos += n;
    return true;
  }

  // Reads one value of `type` into the variant alternative of the same index.
  template <class Variant>
  void read_value(detail::GgufCursor& c, const std::string& key, std::uint32_t type, Variant& out, int depth) const {
    if (type > 12) error("key ", key, ": unknown value type ", type);
    auto scalar = [&](auto tag) {
      using T = decltype(tag);
      T v{};
      if (!c.read(v)) error("key ", key, ": value runs past the end of the file");
      out.template emplace<T>(v);
    };
    switch (static_cast<GgufValueType>(type)) {
      // clang-format off
      case GgufValueType::u8: return scalar(std::uint8_t{});
      case GgufValueType::i8: return scalar(std::int8_t{});
      case GgufValueType::u16: return scalar(std::uint16_t{});
      case GgufValueType::i16: return scalar(std::int16_t{});
      case GgufValueType::u32: return scalar(std::uint32_t{});
      case GgufValueType::i32: return scalar(std::int32_t{});
      case GgufValueType::f32: return scalar(float{});
      case GgufValueType::u64: return scalar(std::uint64_t{});
      case GgufValueType::i64: return scalar(std::int64_t{});
      case GgufValueType::f64: return scalar(double{});
      // clang-format on
      case GgufValueType::boolean: {
        std::uint8_t b = 0;
        if (!c.read(b)) error("key ", key, ": value runs past the end of the file");
        if (b > 1) error("key ", key, ": bool value ", int{b}, " is neither 0 nor 1");
        out.template emplace<bool>(b != 0);
        return;
      }
      case GgufValueType::string: {
        std::string s;
        if (!read_string(c, s)) error("key ", key, ": string runs past the end of the file");
        out.template emplace<std::string>(std::move(s));
        return;
      }
      case GgufValueType::array: {
        out.template emplace<GgufArray>(read_array(c, key, depth + 1));
        return;
      }
    }
  }

  GgufArray read_array(detail::GgufCursor& c, const std::string& key, int depth) const {
    if (depth > kMaxArrayDepth) error("key ", key, ": arrays nested deeper than ", kMaxArrayDepth);
    std::uint32_t type = 0;
    std::uint64_t n = 0;
    if (!c.read(type) || !c.read(n)) error("key ", key, ": array header runs past the end of the file");
    if (type > 12) error("key ", key, ": unknown array element type ", type);
    static constexpr std::uint64_t min_bytes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};
    if (n > c.left() / min_bytes[type])
      error("key ", key, ": array of ", n, " ", gguf_value_type_names[type], " runs past the end of the file");
    GgufArray a;
    GgufValue::Storage element;
    auto fill = [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> v;
      v.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i) {
        read_value(c, key, type, element, depth);
        v.push_back(std::move(std::get<T>(element)));
      }
      a.elements = std::move(v);
    };
    switch (static_cast<GgufValueType>(type)) {
      // clang-format off
      case GgufValueType::u8: fill(std::uint8_t{}); break;
      case GgufValueType::i8: fill(std::int8_t{}); break;
      case GgufValueType::u16: fill(std::uint16_t{}); break;
      case GgufValueType::i16: fill(std::int16_t{}); break;
      case GgufValueType::u32: fill(std::uint32_t{}); break;
      case GgufValueType::i32: fill(std::int32_t{}); break;
      case GgufValueType::f32: fill(float{}); break;
      case GgufValueType::boolean: fill(bool{}); break;
      case GgufValueType::string: fill(std::string{}); break;
      case GgufValueType::array: fill(GgufArray{}); break;
      case GgufValueType::u64: fill(std::uint64_t{}); break;
      case GgufValueType::i64: fill(std::int64_t{}); break;
      case GgufValueType::f64: fill(double{}); break;
        // clang-format on
    }
    return a;
  }

  GgufTensorInfo read_tensor_info(detail::GgufCursor& c, std::uint64_t i) {
    GgufTensorInfo t;
    if (!read_string(c, t.name)) error("tensor #", i, ": name runs past the end of the file");
    if (t.name.size() > kMaxName) error("tensor ", t.name, ": name is longer than ", kMaxName, " bytes");
    if (tensor_index_.count(t.name)) error("tensor ", t.name, ": appears twice");
    std::uint32_t n_dims = 0;
    if (!c.read(n_dims)) error("tensor ", t.name, ": info runs past the end of the file");
    if (n_dims > kMaxDims) error("tensor ", t.name, ": ", n_dims, " dimensions, more than ", kMaxDims);
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      std::uint64_t e = 0;
      if (!c.read(e)) error("tensor ", t.name, ": info runs past the end of the file");
      if (e > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) ||
          (e != 0 && numel > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) / e))
        error("tensor ", t.name, ": dimension ", d, " (", e, ") makes the tensor too large");
      numel *= e;
      t.dims.push_back(static_cast<index_t>(e));
    }
    std::uint32_t type = 0;
    if (!c.read(type) || !c.read(t.offset)) error("tensor ", t.name, ": info runs past the end of the file");
    const GgmlTypeTraits* tr = ggml_type_traits(type);
    if (!tr) error("tensor ", t.name, ": unknown ggml type ", type);
    t.type = tr->type;
    const index_t row = t.dims.empty() ? 1 : t.dims[0];
    if (row % tr->block_size != 0)
      error("tensor ", t.name, ": row length ", row, " is not a multiple of the ", tr->name, " block size ",
            tr->block_size);
    if (t.offset % alignment_ != 0)
      error("tensor ", t.name, ": offset ", t.offset, " is not a multiple of the alignment ", alignment_);
    const std::uint64_t blocks = numel / static_cast<std::uint64_t>(tr->block_size);
    if (blocks > std::numeric_limits<std::uint64_t>::max() / static_cast<std::uint64_t>(tr->type_size))
      error("tensor ", t.name, ": ", numel, " elements of ", tr->name, " are too large");
    t.bytes = blocks * static_cast<std::uint64_t>(tr->type_size);
    tensor_index_.emplace(t.name, tensors_.size());
    return t;
  }

  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = kDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

// Writes GGUF v3 files as gguf-py's GGUFWriter does: general.architecture first, then the keys in the order they were
// set (setting a key again replaces its value in place), tensor infos in the order tensors were added, the data of
// each tensor padded with zeros to the alignment (the last one too). Written through AtomicFileWriter.
class GgufWriter {
 public:
  explicit GgufWriter(const std::string& architecture) { set("general.architecture", architecture); }

  void set(const std::string& key, GgufValue value) {
    for (auto& [k, v] : kv_)
      if (k == key) {
        v = std::move(value);
        return;
      }
    kv_.emplace_back(key, std::move(value));
  }
  // The value's C++ type picks the GGUF type: std::uint32_t -> u32, float -> f32, std::vector<T> -> array, ...
  template <class T>
  void set(const std::string& key, T value) {
    set(key, GgufValue::of(std::move(value)));
  }
  void set_alignment(std::uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
      fail("gguf", "alignment ", alignment, " is not a power of two");
    alignment_ = alignment;
    set("general.alignment", alignment);
  }

  // A tensor in torch order ([out, in] is stored as ggml [in, out]), stored as F32, F16, BF16 or Q8_0 (quantized
  // with ggml's reference quantizer; the last extent must be a multiple of 32).
  template <class T, class... Ds>
  void add_tensor(const std::string& name, const Tensor<T, Ds...>& t, GgmlType type = GgmlType::F32) {
    const std::vector<T> host = t.to_vector();
    const auto& ext = t.shape().extents();
    std::vector<index_t> dims(ext.rbegin(), ext.rend());
    const index_t row = dims.empty() ? 1 : dims[0];
    std::vector<float> x(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) x[i] = convert<float>(host[i]);
    std::vector<std::uint8_t> bytes;
    auto store16 = [&](auto convert16) {
      bytes.resize(2 * x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::uint16_t b = convert16(x[i]);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
    };
    switch (type) {
      case GgmlType::F32:
        bytes.resize(4 * x.size());
        if (!x.empty()) std::memcpy(bytes.data(), x.data(), bytes.size());
        break;
      case GgmlType::F16:
        store16([](float v) { return f16(v).bits; });
        break;
      case GgmlType::BF16:
        store16([](float v) { return bf16(v).bits; });
        break;
      case GgmlType::Q8_0: {
        if (row % QK8_0 != 0)
          fail("gguf", "tensor ", name, ": row length ", row, " is not a multiple of the Q8_0 block size ", QK8_0);
        std::vector<block_q8_0> blocks(x.size() / QK8_0);
        quantize_row_q8_0(x.data(), blocks.data(), static_cast<std::int64_t>(x.size()));
        bytes.resize(blocks.size() * sizeof(block_q8_0));
        if (!blocks.empty()) std::memcpy(bytes.data(), blocks.data(), bytes.size());
        break;
      }
      default:
        fail("gguf", "tensor ", name, ": cannot write type ", ggml_type_name(type),
             " (F32, F16, BF16, Q8_0 are written)");
    }
    add_raw(name, type, std::move(dims), bytes);
  }
  // Stored bytes of any type, dims in ggml order.
  void add_raw(const std::string& name, GgmlType type, std::vector<index_t> ggml_dims,
               std::span<const std::uint8_t> bytes) {
    const GgmlTypeTraits& tr = ggml_traits(type);
    if (name.size() > GgufFile::kMaxName)
      fail("gguf", "tensor ", name, ": name is longer than ", GgufFile::kMaxName, " bytes");
    if (ggml_dims.size() > GgufFile::kMaxDims) fail("gguf", "tensor ", name, ": more than 4 dimensions");
    for (const auto& t : tensors_)
      if (t.name == name) fail("gguf", "tensor ", name, ": added twice");
    index_t numel = 1;
    for (index_t d : ggml_dims) numel *= d;
    const index_t row = ggml_dims.empty() ? 1 : ggml_dims[0];
    if (row % tr.block_size != 0 || static_cast<std::uint64_t>(numel / tr.block_size * tr.type_size) != bytes.size())
      fail("gguf", "tensor ", name, ": ", bytes.size(), " bytes do not hold ggml dims ", detail::shape_str(ggml_dims),
           " of ", tr.name);
    tensors_.push_back({name, type, std::move(ggml_dims), std::vector<std::uint8_t>(bytes.begin(), bytes.end())});
  }

  void write(const std::filesystem::path& path) const {
    AtomicFileWriter out(path, "gguf");
    out.write("GGUF", 4);
    out.write_value(std::uint32_t{3});
    out.write_value(static_cast<std::uint64_t>(tensors_.size()));
    out.write_value(static_cast<std::uint64_t>(kv_.size()));
    for (const auto& [key, value] : kv_) {
      write_string(out, key);
      out.write_value(static_cast<std::uint32_t>(value.type()));
      std::visit([&](const auto& v) { write_value(out, v); }, value.value);
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      write_string(out, t.name);
      out.write_value(static_cast<std::uint32_t>(t.dims.size()));
      for (index_t d : t.dims) out.write_value(static_cast<std::uint64_t>(d));
      out.write_value(static_cast<std::uint32_t>(t.type));
      out.write_value(offset);
      offset += padded(t.bytes.size());
    }
    out.write_zeros(padded(out.position()) - out.position());
    for (const auto& t : tensors_) {
      out.write(t.bytes.data(), t.bytes.size());
      out.write_zeros(padded(t.bytes.size()) - t.bytes.size());
    }
    out.commit();
  }

 private:
  struct Entry {
    std::string name;
    GgmlType type;
    std::vector<index_t> dims;
    std::vector<std::uint8_t> bytes;
  };
  std::uint64_t padded(std::uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
  static void write_string(AtomicFileWriter& out, const std::string& s) {
    out.write_value(static_cast<std::uint64_t>(s.size()));
    out.write(s.data(), s.size());
  }
  static void write_value(AtomicFileWriter& out, const std::string& s) { write_string(out, s); }
  static void write_value(AtomicFileWriter& out, bool b) { out.write_value(static_cast<std::uint8_t>(b ? 1 : 0)); }
  static void write_value(AtomicFileWriter& out, const GgufArray& a) {
    out.write_value(static_cast<std::uint32_t>(a.element_type()));
    out.write_value(static_cast<std::uint64_t>(a.size()));
    std::visit(
        [&](const auto& v) {
          for (const auto& x : v) write_value(out, static_cast<const typename std::decay_t<decltype(v)>::value_type&>(x));
        },
        a.elements);
  }
  template <class T>
  requires std::is_arithmetic_v<T>
  static void write_value(AtomicFileWriter& out, T v) { out.write_value(v); }

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Entry> tensors_;
  std::uint32_t alignment_ = GgufFile::kDefaultAlignment;
};

}  // namespace qlora
