// safetensors files (Hugging Face): read memory-mapped with every header entry validated, and written byte for byte
// as the Rust `safetensors` crate (the Python package's backend) writes them.
//
// File = u64 LE header length N | N bytes of JSON | data buffer. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} relative to the data buffer, which the tensors must cover exactly
// (no holes, no overlaps); "__metadata__" is an optional string -> string map. Readers check the length (<= 100 MB,
// inside the file), duplicate keys, dtypes, shape x dtype size == end - begin, offsets, coverage; each error names the
// file, the tensor and the problem. `SafetensorsCheckpoint` reads sharded checkpoints (model.safetensors.index.json)
// and finds the text model's tensors of Gemma 3 checkpoints under their prefixes.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../core/text.hpp"
#include "mapped_file.hpp"

namespace qlora {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian: no big-endian hosts");

// The dtypes of the format in the crate's enum order, which is also the writer's sort key (descending).
// clang-format off
enum class SafetensorsDtype {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};
// clang-format on

struct SafetensorsDtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  int bits;  // per element (F4 and F6 pack below a byte)
};

// Source: safetensors/src/tensor.rs (Dtype, Dtype::bitsize).
// clang-format off
inline constexpr std::array<SafetensorsDtypeInfo, 22> safetensors_dtypes = [] {
  using D = SafetensorsDtype;
  return std::array<SafetensorsDtypeInfo, 22>{{
      {D::BOOL, "BOOL", 8}, {D::F4, "F4", 4}, {D::F6_E2M3, "F6_E2M3", 6}, {D::F6_E3M2, "F6_E3M2", 6},
      {D::U8, "U8", 8}, {D::I8, "I8", 8}, {D::F8_E5M2, "F8_E5M2", 8}, {D::F8_E4M3, "F8_E4M3", 8},
      {D::F8_E8M0, "F8_E8M0", 8}, {D::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8}, {D::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
      {D::I16, "I16", 16},
      {D::U16, "U16", 16}, {D::F16, "F16", 16}, {D::BF16, "BF16", 16}, {D::I32, "I32", 32},
      {D::U32, "U32", 32}, {D::F32, "F32", 32}, {D::C64, "C64", 64}, {D::F64, "F64", 64},
      {D::I64, "I64", 64}, {D::U64, "U64", 64}}};
}();
// clang-format on
static_assert(
    [] {
      for (std::size_t i = 0; i < safetensors_dtypes.size(); ++i)
        if (static_cast<std::size_t>(safetensors_dtypes[i].dtype) != i) return false;
      return true;
    }(),
    "safetensors_dtypes must list the dtypes in enum order (it is indexed by the enum)");

inline std::string_view safetensors_dtype_name(SafetensorsDtype d) {
  return safetensors_dtypes[static_cast<std::size_t>(d)].name;
}
inline int safetensors_dtype_bits(SafetensorsDtype d) { return safetensors_dtypes[static_cast<std::size_t>(d)].bits; }
inline std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name) {
  for (const auto& d : safetensors_dtypes)
    if (d.name == name) return d.dtype;
  return std::nullopt;
}

// The file dtype of a C++ element type.
template <class T>
constexpr SafetensorsDtype safetensors_dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return SafetensorsDtype::F32;
  else if constexpr (std::is_same_v<T, double>)
    return SafetensorsDtype::F64;
  else if constexpr (std::is_same_v<T, bf16>)
    return SafetensorsDtype::BF16;
  else if constexpr (std::is_same_v<T, f16>)
    return SafetensorsDtype::F16;
  else if constexpr (std::is_same_v<T, bool>)
    return SafetensorsDtype::BOOL;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return SafetensorsDtype::U8;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return SafetensorsDtype::I8;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return SafetensorsDtype::I16;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return SafetensorsDtype::U16;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return SafetensorsDtype::I32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return SafetensorsDtype::U32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return SafetensorsDtype::I64;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return SafetensorsDtype::U64;
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this element type");
}

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<index_t> shape;        // row-major, torch order
  std::uint64_t begin = 0, end = 0;  // byte range in the data buffer
  std::uint64_t bytes() const { return end - begin; }
  index_t numel() const {
    index_t n = 1;
    for (index_t e : shape) n *= e;
    return n;
  }
};

namespace detail {

// Calls f(S{}) with the C++ type S stored under dtype `d`; false for dtypes without one (F8, F4, F6, C64).
template <class F>
bool visit_safetensors_dtype(SafetensorsDtype d, F&& f) {
  switch (d) {
    // clang-format off
    case SafetensorsDtype::BOOL: f(bool{}); return true;
    case SafetensorsDtype::U8: f(std::uint8_t{}); return true;
    case SafetensorsDtype::I8: f(std::int8_t{}); return true;
    case SafetensorsDtype::I16: f(std::int16_t{}); return true;
    case SafetensorsDtype::U16: f(std::uint16_t{}); return true;
    case SafetensorsDtype::F16: f(f16{}); return true;
    case SafetensorsDtype::BF16: f(bf16{}); return true;
    case SafetensorsDtype::I32: f(std::int32_t{}); return true;
    case SafetensorsDtype::U32: f(std::uint32_t{}); return true;
    case SafetensorsDtype::F32: f(float{}); return true;
    case SafetensorsDtype::F64: f(double{}); return true;
    case SafetensorsDtype::I64: f(std::int64_t{}); return true;
    case SafetensorsDtype::U64: f(std::uint64_t{}); return true;
    default: return false;
      // clang-format on
  }
}

// Converts n stored elements (little-endian, any alignment) into T; false for dtypes without a C++ type.
template <class T>
bool convert_safetensors_elements(SafetensorsDtype dtype, const void* src, T* dst, std::size_t n) {
  return visit_safetensors_dtype(dtype, [&](auto s) {
    using S = decltype(s);
    if constexpr (std::is_same_v<S, T>) {
      if (n) std::memcpy(dst, src, n * sizeof(T));
    } else {
      const auto* p = static_cast<const std::uint8_t*>(src);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (std::int64_t i = 0; i < static_cast<std::int64_t>(n); ++i) {
        if constexpr (std::is_same_v<S, bool>) {  // a BOOL byte may be any value in a file: nonzero is true
          dst[i] = convert<T>(p[i] != 0);
        } else {
          S v;
          std::memcpy(&v, p + i * static_cast<std::int64_t>(sizeof(S)), sizeof(S));
          dst[i] = convert<T>(v);
        }
      }
    }
  });
}

inline std::uint64_t read_u64_le(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// JSON string escaping as serde_json writes it: \" \\ \b \f \n \r \t, other control bytes as \u00xx, UTF-8 kept.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      // clang-format off
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      // clang-format on
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace detail

// A memory-mapped, validated safetensors file.
class SafetensorsFile {
 public:
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the crate's MAX_HEADER_SIZE

  explicit SafetensorsFile(const std::filesystem::path& path) : file_(path, "safetensors") { parse(); }

  const std::filesystem::path& path() const { return file_.path(); }
  // The tensor bytes read so far leave the resident set (MappedFile::release_pages); later reads map them again.
  void release_pages() const { file_.release_pages(); }
  // Tensor names in the order of their data in the file.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& t : tensors_) out.push_back(t.name);
    return out;
  }
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  bool contains(std::string_view name) const { return index_.count(std::string(name)) != 0; }
  const SafetensorsTensorInfo& info(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) fail("safetensors", file_.path().string(), ": tensor ", name, ": not in the file");
    return tensors_[it->second];
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has_metadata() const { return has_metadata_; }
  // The stored bytes of a tensor (little-endian, row-major).
  std::span<const std::uint8_t> raw(std::string_view name) const {
    const auto& t = info(name);
    return {data_ + t.begin, static_cast<std::size_t>(t.bytes())};
  }

  // The tensor converted into T (float, double, bf16, f16, or integers), its shape checked against the type.
  template <class T, class... Ds>
  Tensor<T, Ds...> read(std::string_view name) const {
    const auto& t = info(name);
    const auto extents = detail::file_extents<Ds...>("safetensors", file_.path(), t.name, t.shape);
    Tensor<T, Ds...> out{typename Tensor<T, Ds...>::shape_type(extents)};
    if (!detail::convert_safetensors_elements<T>(t.dtype, data_ + t.begin, out.data(),
                                                 static_cast<std::size_t>(t.numel())))
      error("tensor ", t.name, ": dtype ", safetensors_dtype_name(t.dtype), " cannot be read as ",
            dtype_traits<T>::name);
    return out;
  }

 private:
  template <class... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail("safetensors", file_.path().string(), ": ", shown(parts)...);  // names from the file, printable
  }

  void parse() {
    const std::size_t size = file_.size();
    if (size < 8) error("file is ", size, " bytes, too short for the 8-byte header length");
    const std::uint64_t n = detail::read_u64_le(file_.data());
    if (n > kMaxHeaderBytes) error("header length ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
    if (n > size - 8) error("header length ", n, " runs past the end of the file (", size, " bytes)");
    const auto* header = reinterpret_cast<const char*>(file_.data() + 8);
    if (n == 0 || header[0] != '{') error("header does not start with '{'");
    data_ = file_.data() + 8 + n;
    const std::uint64_t data_size = size - 8 - n;

    // nlohmann keeps the last of duplicate keys; the format forbids them, so watch the top-level keys go by
    std::vector<std::string> keys;
    std::optional<std::string> duplicate;
    auto watch = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!duplicate && std::find(keys.begin(), keys.end(), k) != keys.end()) duplicate = k;
        keys.push_back(k);
      }
      return true;
    };
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(header, header + n, watch);
    } catch (const nlohmann::json::exception& e) {
      error("header is not valid JSON: ", e.what());
    }
    if (duplicate) error("tensor ", *duplicate, ": appears twice in the header");
    if (!root.is_object()) error("header is not a JSON object");

    for (auto it = root.begin(); it != root.end(); ++it) {
      if (it.key() == "__metadata__") {
        parse_metadata(it.value());
        continue;
      }
      tensors_.push_back(parse_entry(it.key(), it.value(), data_size));
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    std::uint64_t covered = 0;  // the tensors must tile [0, data_size) exactly
    const SafetensorsTensorInfo* previous = nullptr;
    for (const auto& t : tensors_) {
      if (t.begin < covered) error("tensor ", t.name, ": data overlaps tensor ", previous->name);
      if (t.begin > covered)
        error("tensor ", t.name, ": hole of ", t.begin - covered, " bytes before its data (at offset ", covered, ")");
      covered = t.end;
      previous = &t;
    }
    if (covered != data_size) error(data_size - covered, " bytes after the last tensor's data are not covered");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  void parse_metadata(const nlohmann::json& m) {
    if (!m.is_object()) error("__metadata__ is not a JSON object");
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it.value().is_string()) error("__metadata__ key ", it.key(), ": value is not a string");
      metadata_.emplace(it.key(), it.value().get<std::string>());
    }
    has_metadata_ = true;
  }

  SafetensorsTensorInfo parse_entry(const std::string& name, const nlohmann::json& e, std::uint64_t data_size) const {
    SafetensorsTensorInfo t;
    t.name = name;
    if (!e.is_object()) error("tensor ", name, ": entry is not a JSON object");
    const auto dtype = e.find("dtype");
    if (dtype == e.end() || !dtype->is_string()) error("tensor ", name, ": missing \"dtype\"");
    const auto d = safetensors_dtype_from_name(dtype->get_ref<const std::string&>());
    if (!d) error("tensor ", name, ": unknown dtype ", dtype->get_ref<const std::string&>());
    t.dtype = *d;
    const auto shape = e.find("shape");
    if (shape == e.end() || !shape->is_array()) error("tensor ", name, ": missing \"shape\"");
    std::uint64_t numel = 1;
    for (const auto& x : *shape) {
      if (!x.is_number_unsigned()) error("tensor ", name, ": shape ", shape->dump(), " is not a list of sizes");
      const std::uint64_t extent = x.get<std::uint64_t>();
      if (extent > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) ||
          (extent != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 64 / extent))
        error("tensor ", name, ": shape ", shape->dump(), " is too large");
      numel *= extent;
      t.shape.push_back(static_cast<index_t>(extent));
    }
    const auto offsets = e.find("data_offsets");
    if (offsets == e.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      error("tensor ", name, ": \"data_offsets\" is not a pair of offsets");
    t.begin = (*offsets)[0].get<std::uint64_t>();
    t.end = (*offsets)[1].get<std::uint64_t>();
    if (t.end < t.begin) error("tensor ", name, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin");
    const std::uint64_t bits = numel * static_cast<std::uint64_t>(safetensors_dtype_bits(t.dtype));
    if (bits % 8 != 0)
      error("tensor ", name, ": shape ", detail::shape_str(t.shape), " of ", dtype->get_ref<const std::string&>(),
            " is not a whole number of bytes");
    if (t.end - t.begin != bits / 8)
      error("tensor ", name, ": shape ", detail::shape_str(t.shape), " of ", dtype->get_ref<const std::string&>(),
            " needs ", bits / 8, " bytes but data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin);
    if (t.end > data_size)
      error("tensor ", name, ": data_offsets [", t.begin, ", ", t.end, "] run past the end of the data (", data_size,
            " bytes)");
    return t;
  }

  MappedFile file_;
  const std::uint8_t* data_ = nullptr;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  bool has_metadata_ = false;
};

// Collects named tensors and metadata, and writes them as the Rust crate does: compact JSON with "__metadata__"
// first, tensors sorted by descending dtype (enum order) then by name, offsets assigned contiguously in that order,
// the header padded with spaces to a multiple of 8. The crate keeps metadata in a HashMap (its order varies from run
// to run); here metadata keys are sorted, so files agree byte for byte whenever there is at most one metadata key.
class SafetensorsWriter {
 public:
  // A CPU copy of the tensor is kept (views share storage, so this costs no copy for CPU tensors).
  template <class T, class... Ds>
  void add(const std::string& name, const Tensor<T, Ds...>& t) {
    const Tensor<T, Ds...> host = t.device().is_cpu() ? t : t.to(Device::cpu());
    const auto& ext = host.shape().extents();
    Entry e{name,
            safetensors_dtype_of<T>(),
            std::vector<index_t>(ext.begin(), ext.end()),
            host.storage(),
            reinterpret_cast<const std::uint8_t*>(host.data()),
            host.bytes()};
    push(std::move(e));
  }
  // Raw little-endian bytes (copied), e.g. packed 4-bit codes; their count must match shape and dtype.
  void add_raw(const std::string& name, SafetensorsDtype dtype, std::vector<index_t> shape,
               std::span<const std::uint8_t> bytes) {
    auto copy = std::make_shared<std::vector<std::uint8_t>>(bytes.begin(), bytes.end());
    Entry e{name, dtype, std::move(shape), copy, copy->data(), copy->size()};
    push(std::move(e));
  }
  void set_metadata(const std::string& key, const std::string& value) {
    if (!metadata_) metadata_.emplace();
    (*metadata_)[key] = value;
  }
  // Writes "__metadata__": {} even when empty (as the crate does for an empty dict).
  void set_metadata(std::map<std::string, std::string> metadata) { metadata_ = std::move(metadata); }

  // The JSON header with its padding, offsets as they will be written.
  std::string header() const {
    std::string h = "{";
    if (metadata_) {
      h += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [k, v] : *metadata_) {
        if (!std::exchange(first, false)) h += ',';
        detail::append_json_string(h, k);
        h += ':';
        detail::append_json_string(h, v);
      }
      h += '}';
    }
    std::uint64_t offset = 0;
    for (const Entry* e : sorted()) {
      if (h.size() > 1) h += ',';
      detail::append_json_string(h, e->name);
      h += ":{\"dtype\":\"";
      h += safetensors_dtype_name(e->dtype);
      h += "\",\"shape\":[";
      for (std::size_t i = 0; i < e->shape.size(); ++i) {
        if (i) h += ',';
        h += std::to_string(e->shape[i]);
      }
      h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e->bytes) + "]}";
      offset += e->bytes;
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    return h;
  }

  void write(const std::filesystem::path& path) const {
    const std::string h = header();
    AtomicFileWriter out(path, "safetensors");
    out.write_value(static_cast<std::uint64_t>(h.size()));
    out.write(h.data(), h.size());
    for (const Entry* e : sorted()) out.write(e->data, e->bytes);
    out.commit();
  }

 private:
  struct Entry {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<index_t> shape;
    std::shared_ptr<const void> keep_alive;
    const std::uint8_t* data;
    std::size_t bytes;
  };
  void push(Entry e) {
    if (e.name == "__metadata__") fail("safetensors", "tensor name __metadata__ is reserved");
    for (const auto& o : entries_)
      if (o.name == e.name) fail("safetensors", "tensor ", e.name, ": added twice");
    std::uint64_t numel = 1;
    for (index_t x : e.shape) {
      if (x < 0) fail("safetensors", "tensor ", e.name, ": negative extent in ", detail::shape_str(e.shape));
      numel *= static_cast<std::uint64_t>(x);
    }
    const std::uint64_t bits = numel * static_cast<std::uint64_t>(safetensors_dtype_bits(e.dtype));
    if (bits % 8 != 0 || bits / 8 != e.bytes)
      fail("safetensors", "tensor ", e.name, ": ", e.bytes, " bytes do not hold shape ", detail::shape_str(e.shape),
           " of ", safetensors_dtype_name(e.dtype));
    entries_.push_back(std::move(e));
  }
  std::vector<const Entry*> sorted() const {
    std::vector<const Entry*> order;
    for (const auto& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
      return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
    });
    return order;
  }

  std::vector<Entry> entries_;
  std::optional<std::map<std::string, std::string>> metadata_;
};

// Gemma 3 checkpoints keep the text model under one prefix: "model." (Gemma3ForCausalLM: 270M, 1B),
// "model.language_model." (Gemma3ForConditionalGeneration, 4B+, transformers >= 4.52) or "language_model.model."
// (the same, saved by earlier versions). The vision tower and the multimodal projector beside it are skipped.
inline constexpr std::array<std::string_view, 3> gemma3_text_prefixes = {"model.language_model.",
                                                                         "language_model.model.", "model."};

inline bool is_gemma3_vision_tensor(std::string_view name) {
  for (std::string_view p :
       {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
    if (name.starts_with(p)) return true;
  return false;
}

// The module a vision-tower / projector weight belongs to, as transformers 5 names it in memory (and PEFT names its
// LoRA weights): "model.vision_tower.encoder.layers.0.self_attn.q_proj" from any of the files' namings —
// "model.vision_tower.encoder..." (saved with save_original_format=False), "vision_tower.encoder..." (transformers
// 5's default save) or "vision_tower.vision_model.encoder..." (Google's published files).
inline std::string gemma3_vision_module(std::string_view tensor) {
  std::string_view s = tensor;
  if (s.ends_with(".weight")) s.remove_suffix(7);
  if (s.starts_with("model.")) s.remove_prefix(6);
  std::string out = "model.";
  if (s.starts_with("vision_tower.vision_model.")) {
    out += "vision_tower.";
    s.remove_prefix(std::string_view("vision_tower.vision_model.").size());
  }
  out += s;
  return out;
}

// The name inside the text model ("layers.3.self_attn.q_proj.weight", "embed_tokens.weight", "norm.weight",
// "lm_head.weight"); nullopt for vision tensors and anything outside the text model.
inline std::optional<std::string> gemma3_text_name(std::string_view name) {
  if (is_gemma3_vision_tensor(name)) return std::nullopt;
  if (name == "lm_head.weight" || name == "language_model.lm_head.weight") return std::string("lm_head.weight");
  for (std::string_view p : gemma3_text_prefixes)
    if (name.starts_with(p)) return std::string(name.substr(p.size()));
  return std::nullopt;
}

// A checkpoint of one or more safetensors files. `path` is a folder (holding model.safetensors.index.json, else
// model.safetensors), an index file, or a single .safetensors file. The index's "weight_map" maps each tensor name to
// its shard, a file in the same folder; every listed tensor must be in its shard.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    fs::path p = path;
    if (fs::is_directory(p)) {
      if (fs::exists(p / "model.safetensors.index.json"))
        p /= "model.safetensors.index.json";
      else if (fs::exists(p / "model.safetensors"))
        p /= "model.safetensors";
      else
        fail("safetensors", path.string(), ": neither model.safetensors.index.json nor model.safetensors found");
    }
    path_ = p;
    if (p.extension() == ".json")
      open_index(p);
    else
      open_single(p);
  }

  const std::filesystem::path& path() const { return path_; }
  // All tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, shard] : where_) out.push_back(name);
    return out;
  }
  bool contains(std::string_view name) const { return where_.count(std::string(name)) != 0; }
  const SafetensorsFile& file_of(std::string_view name) const {
    const auto it = where_.find(std::string(name));
    if (it == where_.end()) fail("safetensors", path_.string(), ": tensor ", name, ": not in the checkpoint");
    return *shards_[it->second];
  }
  const SafetensorsTensorInfo& info(std::string_view name) const { return file_of(name).info(name); }
  template <class T, class... Ds>
  Tensor<T, Ds...> read(std::string_view name) const {
    return file_of(name).template read<T, Ds...>(name);
  }
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  void release_pages() const {
    for (const auto& shard : shards_) shard->release_pages();
  }
  // The index's "metadata" object (e.g. {"total_size": ...}); null for a single file.
  const nlohmann::json& index_metadata() const { return index_metadata_; }

  // The full name of a Gemma 3 text-model tensor, e.g. "layers.0.mlp.up_proj.weight" ->
  // "model.language_model.layers.0.mlp.up_proj.weight", whichever prefix this checkpoint uses.
  std::string text_tensor_name(std::string_view text_name) const {
    if (text_name == "lm_head.weight")
      for (std::string_view full : {"lm_head.weight", "language_model.lm_head.weight"})
        if (contains(full)) return std::string(full);
    for (std::string_view p : gemma3_text_prefixes) {
      std::string full = std::string(p) + std::string(text_name);
      if (contains(full)) return full;
    }
    fail("safetensors", path_.string(), ": tensor ", text_name,
         ": not in the checkpoint under any of the prefixes model.language_model., language_model.model., model.");
  }
  template <class T, class... Ds>
  Tensor<T, Ds...> read_text(std::string_view text_name) const {
    return read<T, Ds...>(text_tensor_name(text_name));
  }

 private:
  void open_single(const std::filesystem::path& p) {
    shards_.push_back(std::make_unique<SafetensorsFile>(p));
    for (const auto& t : shards_.back()->tensors()) where_.emplace(t.name, 0);
  }
  void open_index(const std::filesystem::path& p) {
    const MappedFile f(p, "safetensors");
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(f.data(), f.data() + f.size());
    } catch (const nlohmann::json::exception& e) {
      fail("safetensors", p.string(), ": not valid JSON: ", e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail("safetensors", p.string(), ": missing \"weight_map\" object");
    if (index.contains("metadata")) index_metadata_ = index["metadata"];
    std::map<std::string, std::size_t> shard_ids;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) fail("safetensors", p.string(), ": tensor ", name, ": shard is not a string");
      const std::string file = shard.get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        fail("safetensors", p.string(), ": tensor ", name, ": shard ", file, " is not a file name in the same folder");
      auto [it, added] = shard_ids.emplace(file, shards_.size());
      if (added) shards_.push_back(std::make_unique<SafetensorsFile>(p.parent_path() / file));
      if (!shards_[it->second]->contains(name))
        fail("safetensors", p.string(), ": tensor ", name, ": weight_map puts it in ", file,
             ", which does not contain it");
      where_.emplace(name, it->second);
    }
  }

  std::filesystem::path path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::size_t> where_;  // tensor name -> shard
  nlohmann::json index_metadata_;
};

}  // namespace qlora
