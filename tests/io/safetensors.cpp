// safetensors reading and writing against files written by the real safetensors package
// (tests/golden/safetensors_files.py): every dtype, shape and value; our writer's bytes identical to the package's;
// sharded checkpoints and Gemma 3 name prefixes; corrupt files rejected with messages naming file, tensor and
// problem; the memory map and the atomic writer underneath.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <qlora/io/safetensors.hpp>

using namespace qlora;
namespace fs = std::filesystem;

namespace {

const fs::path kSafetensorsDir = fs::path(QLORA_TEST_DATA_DIR) / "io" / "safetensors";

nlohmann::json safetensors_manifest() {
  std::ifstream in(kSafetensorsDir / "manifest.json");
  REQUIRE_MESSAGE(in.good(), "cannot open ", (kSafetensorsDir / "manifest.json").string(),
                  " (run tests/golden/safetensors_files.py)");
  return nlohmann::json::parse(in);
}
std::vector<std::uint8_t> read_safetensors_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const fs::path& p, std::string_view b) {
  std::ofstream out(p, std::ios::binary);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

struct SafetensorsTempDir {
  fs::path path;
  SafetensorsTempDir() {
    static std::atomic<int> counter{0};
    path =
        fs::temp_directory_path() / ("qlora-st-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~SafetensorsTempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// read<double, Dyn x rank>, flattened.
template <class Reader>
std::vector<double> read_flat(const Reader& f, const std::string& name, std::size_t rank) {
  switch (rank) {
    case 0:
      return f.template read<double>(name).to_vector();
    case 1:
      return f.template read<double, Dyn>(name).to_vector();
    case 2:
      return f.template read<double, Dyn, Dyn>(name).to_vector();
    default:
      FAIL("unexpected rank ", rank);
      return {};
  }
}

// A safetensors file from a header (given as JSON text) and `data` zero bytes.
std::string st_bytes(std::string_view header, std::size_t data, std::uint64_t length = ~std::uint64_t{0}) {
  if (length == ~std::uint64_t{0}) length = header.size();
  std::string b(8, '\0');
  std::memcpy(b.data(), &length, 8);
  b += header;
  b.append(data, '\0');
  return b;
}

std::string open_error(const fs::path& p, std::string_view bytes) {
  write_bytes(p, bytes);
  try {
    SafetensorsFile f(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("safetensors files from the package: dtypes, shapes, metadata and values") {
    const auto m = safetensors_manifest();
    for (const auto& file_item : m.at("files").items()) {
      const std::string& file = file_item.key();
      const auto& expected = file_item.value();
      INFO("file ", file);
      SafetensorsFile f(kSafetensorsDir / file);
      CHECK(f.has_metadata() == !expected.at("metadata").is_null());
      if (f.has_metadata()) CHECK(nlohmann::json(f.metadata()) == expected.at("metadata"));
      CHECK(f.tensors().size() == expected.at("tensors").size());
      for (const auto& tensor_item : expected.at("tensors").items()) {
        const std::string& name = tensor_item.key();
        const auto& e = tensor_item.value();
        INFO("tensor ", name);
        const auto& info = f.info(name);
        CHECK(safetensors_dtype_name(info.dtype) == e.at("dtype").get<std::string>());
        CHECK(info.shape == e.at("shape").get<std::vector<index_t>>());
        CHECK(read_flat(f, name, info.shape.size()) == e.at("values").get<std::vector<double>>());
      }
    }
    SafetensorsFile t(kSafetensorsDir / "torch_bf16.safetensors");
    const auto emb = t.read<bf16, Dim<4>, Dim<8>>("model.embed_tokens.weight");  // stored bf16: bits unchanged
    CHECK(std::memcmp(emb.data(), t.raw("model.embed_tokens.weight").data(), emb.bytes()) == 0);
    const auto norm = t.read<float, Dim<4>>("model.norm.weight");
    CHECK(norm(2) == 3.140625f);
    SafetensorsFile n(kSafetensorsDir / "numpy.safetensors");
    CHECK(n.read<float>("scalar").item() == 2.5f);
    CHECK(n.read<float, Dyn, Dim<4>>("empty").numel() == 0);
    CHECK(n.read<std::int64_t, Dim<3>>("ids")(2) == (std::int64_t{1} << 40));
  }

  TEST_CASE("SafetensorsWriter writes the package's bytes for the same tensors and metadata") {
    SafetensorsTempDir tmp;
    for (const char* file : {"numpy.safetensors", "no_metadata.safetensors", "torch_bf16.safetensors"}) {
      INFO("file ", file);
      SafetensorsFile reference(kSafetensorsDir / file);
      SafetensorsWriter w;
      for (const auto& t : reference.tensors()) w.add_raw(t.name, t.dtype, t.shape, reference.raw(t.name));
      if (reference.has_metadata()) w.set_metadata(reference.metadata());
      w.write(tmp.path / file);
      CHECK(read_safetensors_bytes(tmp.path / file) == read_safetensors_bytes(kSafetensorsDir / file));
    }
    // typed tensors give the same file
    SafetensorsFile reference(kSafetensorsDir / "torch_bf16.safetensors");
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    w.add("model.norm.weight", reference.read<bf16, Dim<4>>("model.norm.weight"));
    w.add("lora_A.weight", reference.read<float, Dim<2>, Dim<8>>("lora_A.weight"));
    w.add("half", reference.read<f16, Dyn>("half"));
    w.add("model.embed_tokens.weight", reference.read<bf16, Dyn, Dim<8>>("model.embed_tokens.weight"));
    w.write(tmp.path / "typed.safetensors");
    CHECK(read_safetensors_bytes(tmp.path / "typed.safetensors") == read_safetensors_bytes(kSafetensorsDir / "torch_bf16.safetensors"));
    CHECK_THROWS_WITH_AS(w.add("half", Tensor<float, Dim<1>>::zeros()), "[safetensors] tensor half: added twice",
                         Error);
    CHECK_THROWS_WITH_AS(w.add_raw("x", SafetensorsDtype::F32, {2}, std::vector<std::uint8_t>(7)),
                         "[safetensors] tensor x: 7 bytes do not hold shape [2] of F32", Error);
  }

  TEST_CASE("the header is compact JSON: metadata first, dtypes descending, names ascending, padded to 8") {
    SafetensorsWriter w;
    w.add("b", Tensor<float, Dim<1>>::zeros());
    w.add("a", Tensor<float, Dim<1>>::zeros());
    w.add("z", Tensor<std::uint8_t, Dim<2>>::zeros());
    w.add("m", Tensor<std::int64_t>::zeros());
    w.set_metadata("k", "tab\there \"q\" \x01");
    const std::string h = w.header();
    const std::string json =
        "{\"__metadata__\":{\"k\":\"tab\\there \\\"q\\\" \\u0001\"},"
        "\"m\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[16,18]}}";
    CHECK(h == json + std::string((8 - json.size() % 8) % 8, ' '));
    CHECK(h.size() % 8 == 0);
  }

  TEST_CASE("sharded checkpoints: the index maps names to shards, and Gemma 3 text names resolve under prefixes") {
    const auto m = safetensors_manifest().at("sharded");
    SafetensorsCheckpoint c(kSafetensorsDir / "sharded");
    CHECK(c.shards().size() == 2);
    CHECK(c.names().size() == m.at("weight_map").size());
    CHECK(c.index_metadata().at("total_size") == 424);
    for (const auto& item : m.at("weight_map").items()) {
      const std::string& name = item.key();
      const auto& shard = item.value();
      INFO("tensor ", name);
      CHECK(c.file_of(name).path().filename() == shard.get<std::string>());
      CHECK(c.info(name).shape == m.at("shapes").at(name).get<std::vector<index_t>>());
      CHECK(read_flat(c, name, c.info(name).shape.size()) == m.at("values").at(name).get<std::vector<double>>());
    }
    CHECK(c.text_tensor_name("layers.1.mlp.up_proj.weight") == "model.language_model.layers.1.mlp.up_proj.weight");
    const auto up = c.read_text<float, Dim<6>, Dim<4>>("layers.1.mlp.up_proj.weight");
    CHECK(static_cast<double>(up(5, 3)) ==
          m.at("values").at("model.language_model.layers.1.mlp.up_proj.weight")[23].get<double>());
    int text = 0, vision = 0;
    for (const auto& name : c.names()) {
      if (gemma3_text_name(name)) ++text;
      if (is_gemma3_vision_tensor(name)) ++vision;
    }
    CHECK(text == 8);
    CHECK(vision == 2);
    const std::string index = (kSafetensorsDir / "sharded" / "model.safetensors.index.json").string();
    CHECK_THROWS_WITH_AS(c.text_tensor_name("layers.2.mlp.up_proj.weight"),
                         ("[safetensors] " + index +
                          ": tensor layers.2.mlp.up_proj.weight: not in the checkpoint under "
                          "any of the prefixes model.language_model., language_model.model., model.")
                             .c_str(),
                         Error);
    CHECK_THROWS_WITH_AS(c.info("lm_head.weight"),
                         ("[safetensors] " + index +
                          ": tensor lm_head.weight: not in the "
                          "checkpoint")
                             .c_str(),
                         Error);
    SafetensorsCheckpoint single(kSafetensorsDir / "torch_bf16.safetensors");
    CHECK(single.text_tensor_name("norm.weight") == "model.norm.weight");
  }

  TEST_CASE("gemma3_text_name strips each checkpoint layout's prefix and skips the vision tower") {
    CHECK(gemma3_text_name("model.layers.3.self_attn.q_proj.weight") == "layers.3.self_attn.q_proj.weight");
    CHECK(gemma3_text_name("model.language_model.layers.3.mlp.down_proj.weight") == "layers.3.mlp.down_proj.weight");
    CHECK(gemma3_text_name("language_model.model.embed_tokens.weight") == "embed_tokens.weight");
    CHECK(gemma3_text_name("language_model.lm_head.weight") == "lm_head.weight");
    CHECK_FALSE(gemma3_text_name("vision_tower.vision_model.post_layernorm.weight"));
    CHECK_FALSE(gemma3_text_name("model.vision_tower.vision_model.post_layernorm.weight"));
    CHECK_FALSE(gemma3_text_name("multi_modal_projector.mm_soft_emb_norm.weight"));
    CHECK_FALSE(gemma3_text_name("something.else"));
  }

  TEST_CASE("a broken index names the index file, the tensor and the shard") {
    SafetensorsTempDir tmp;
    for (const auto& e : fs::directory_iterator(kSafetensorsDir / "sharded")) fs::copy(e.path(), tmp.path / e.path().filename());
    const fs::path index = tmp.path / "model.safetensors.index.json";
    auto j = nlohmann::json::parse(std::ifstream(index));
    j["weight_map"]["model.language_model.norm.weight"] = "model-00001-of-00002.safetensors";
    std::ofstream(index) << j.dump();
    CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{tmp.path},
                         ("[safetensors] " + index.string() +
                          ": tensor model.language_model.norm.weight: weight_map "
                          "puts it in model-00001-of-00002.safetensors, which does not contain it")
                             .c_str(),
                         Error);
    j["weight_map"]["model.language_model.norm.weight"] = "model-00003-of-00003.safetensors";
    std::ofstream(index) << j.dump();
    CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{tmp.path},
                         ("[safetensors] " + (tmp.path / "model-00003-of-00003.safetensors").string() +
                          ": cannot open: No such file or directory")
                             .c_str(),
                         Error);
    j["weight_map"]["model.language_model.norm.weight"] = "../elsewhere.safetensors";
    std::ofstream(index) << j.dump();
    CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{tmp.path},
                         ("[safetensors] " + index.string() +
                          ": tensor model.language_model.norm.weight: shard "
                          "../elsewhere.safetensors is not a file name in the same folder")
                             .c_str(),
                         Error);
    std::ofstream(index) << "{\"metadata\": {}}";
    CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{tmp.path},
                         ("[safetensors] " + index.string() + ": missing \"weight_map\" object").c_str(), Error);
    fs::remove(index);
    CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{tmp.path},
                         ("[safetensors] " + tmp.path.string() +
                          ": neither model.safetensors.index.json nor "
                          "model.safetensors found")
                             .c_str(),
                         Error);
  }

  TEST_CASE("corrupt safetensors files are rejected with the file, the tensor and the problem") {
    SafetensorsTempDir tmp;
    const fs::path p = tmp.path / "model.safetensors";
    const std::string at = "[safetensors] " + p.string() + ": ";
    auto err = [&](std::string_view bytes) { return open_error(p, bytes); };
    const std::string w = R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})";

    CHECK(err(st_bytes("{" + w + "}", 24)) == "");
    CHECK(err("abcde") == at + "file is 5 bytes, too short for the 8-byte header length");
    CHECK(err(st_bytes("{}", 0, std::uint64_t{1} << 40)) ==
          at + "header length 1099511627776 exceeds the limit of 100000000 bytes");
    CHECK(err(st_bytes("{}", 0, 1000)) == at + "header length 1000 runs past the end of the file (10 bytes)");
    CHECK(err(st_bytes(" {}", 0)) == at + "header does not start with '{'");
    CHECK(err(st_bytes("{\"w\":", 0)).rfind(at + "header is not valid JSON: ", 0) == 0);
    CHECK(err(st_bytes("[]", 0)) == at + "header does not start with '{'");
    CHECK(err(st_bytes(R"({"w":5})", 0)) == at + "tensor w: entry is not a JSON object");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F33","shape":[2,3],"data_offsets":[0,24]}})", 24)) ==
          at + "tensor w: unknown dtype F33");
    CHECK(err(st_bytes(R"({"w":{"shape":[2,3],"data_offsets":[0,24]}})", 24)) == at + "tensor w: missing \"dtype\"");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}})", 24)) ==
          at + "tensor w: shape [2,-3] is not a list of sizes");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20)) ==
          at + "tensor w: shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}})", 24)) ==
          at + "tensor w: data_offsets [24, 0] end before they begin");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}})", 24)) ==
          at + "tensor w: \"data_offsets\" is not a pair of offsets");
    CHECK(err(st_bytes("{" + w + "}", 16)) ==
          at + "tensor w: data_offsets [0, 24] run past the end of the data (16 bytes)");
    CHECK(err(st_bytes("{" + w + "}", 32)) == at + "8 bytes after the last tensor's data are not covered");
    CHECK(err(st_bytes("{" + w + "," + w + "}", 24)) == at + "tensor w: appears twice in the header");
    CHECK(err(st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                       24)) == at + "tensor b: data overlaps tensor a");
    CHECK(err(st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})",
                       32)) == at + "tensor b: hole of 8 bytes before its data (at offset 16)");
    CHECK(err(st_bytes(R"({"__metadata__":{"k":1},)" + w + "}", 24)) ==
          at + "__metadata__ key k: value is not a string");
    CHECK(err(st_bytes(R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", 1)) ==
          at + "tensor w: shape [3] of F4 is not a whole number of bytes");

    // valid files, invalid requests
    write_bytes(p, st_bytes("{" + w + R"(,"f8":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[24,32]}})", 32));
    SafetensorsFile f(p);
    CHECK_THROWS_WITH_AS((f.read<float, Dim<3>, Dyn>("w")),
                         (at + "tensor w: shape [2, 3] in the file, but the type expects [3, ?]").c_str(), Error);
    CHECK_THROWS_WITH_AS((f.read<float, Dyn>("w")),
                         (at + "tensor w: shape [2, 3] in the file, but the type expects [?]").c_str(), Error);
    CHECK_THROWS_WITH_AS((f.read<float, Dyn>("nope")), (at + "tensor nope: not in the file").c_str(), Error);
    CHECK_THROWS_WITH_AS((f.read<float, Dim<8>>("f8")), (at + "tensor f8: dtype F8_E4M3 cannot be read as f32").c_str(),
                         Error);
    CHECK(f.raw("f8").size() == 8);
    const fs::path missing = tmp.path / "missing.safetensors";
    CHECK_THROWS_WITH_AS(SafetensorsFile{missing},
                         ("[safetensors] " + missing.string() + ": cannot open: No such file or directory").c_str(),
                         Error);
    CHECK_THROWS_WITH_AS(SafetensorsFile{tmp.path},
                         ("[safetensors] " + tmp.path.string() + ": not a regular file").c_str(), Error);
  }

  TEST_CASE("every truncation of a package file fails with qlora::Error") {
    SafetensorsTempDir tmp;
    const auto good = read_safetensors_bytes(kSafetensorsDir / "numpy.safetensors");
    for (std::size_t n = 0; n < good.size(); ++n) {
      const std::string e =
          open_error(tmp.path / "cut.safetensors", std::string_view(reinterpret_cast<const char*>(good.data()), n));
      CHECK_MESSAGE(e.rfind("[safetensors] ", 0) == 0, "a copy cut to ", n, " bytes: ", e);
    }
  }

  TEST_CASE("AtomicFileWriter publishes a file only on commit and leaves no temporary behind") {
    SafetensorsTempDir tmp;
    const fs::path p = tmp.path / "out.bin";
    const fs::path partial = p.string() + ".tmp-" + std::to_string(::getpid());
    {
      AtomicFileWriter out(p, "io");
      out.write("abc", 3);
      CHECK(fs::exists(partial));
      CHECK_FALSE(fs::exists(p));
    }  // destroyed without commit, as when an exception unwinds
    CHECK_FALSE(fs::exists(partial));
    CHECK_FALSE(fs::exists(p));
    {
      AtomicFileWriter out(p, "io");
      std::vector<std::uint8_t> big(3 << 20, 7);  // larger than the buffer
      out.write("x", 1);
      out.write(big);
      out.write_zeros(5);
      CHECK(out.position() == 1 + big.size() + 5);
      out.commit();
      CHECK_THROWS_WITH_AS(out.commit(), ("[io] " + p.string() + ": commit() called twice").c_str(), Error);
    }
    CHECK(fs::file_size(p) == 1 + (3u << 20) + 5);
    CHECK_FALSE(fs::exists(partial));
    MappedFile m(p);
    CHECK(m.size() == fs::file_size(p));
    CHECK(m.data()[0] == 'x');
    CHECK(m.data()[m.size() - 6] == 7);
    // release_pages gives the read pages back; the mapping stays valid and reads the same bytes again.
    std::uint64_t before = 0;
    for (std::size_t i = 0; i < m.size(); i += 4096) before += m.data()[i];
    m.release_pages();
    std::uint64_t after = 0;
    for (std::size_t i = 0; i < m.size(); i += 4096) after += m.data()[i];
    CHECK(after == before);
    CHECK(m.data()[0] == 'x');
    MappedFile().release_pages();  // nothing mapped: nothing to do
    const fs::path nowhere = tmp.path / "no" / "such" / "dir.bin";
    CHECK_THROWS_AS(AtomicFileWriter(nowhere, "io"), Error);
    write_bytes(tmp.path / "empty", "");
    CHECK(MappedFile(tmp.path / "empty").size() == 0);
  }
}
