// PEFT's adapter format: our tensor names are exactly the ones PEFT saved for a tiny Gemma 3 (tests/data/peft/
// keys.json, from tests/golden/peft_adapter.py), names parse back, and adapter_config.json holds PEFT's values.
// Adapter folders: PEFT's config with weights of PEFT's names and shapes loads (fp32 and bf16), save + load is
// bit-exact, and each broken folder is refused naming the file.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <set>

#include "support/check.hpp"

#include <qlora/io/peft.hpp>

using namespace qlora;

namespace {
nlohmann::json read_json(const std::string& name) {
  std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/peft/" + name);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}

// A folder as PEFT's save_pretrained leaves it for tests/golden/peft_adapter.py's model: its adapter_config.json,
// and adapter_model.safetensors with the names and shapes of keys.json (values random, stored as `T`).
template <class T>
std::filesystem::path peft_folder(const std::string& name) {
  const auto dir = fresh_dir(name);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(std::string(QLORA_TEST_DATA_DIR) + "/peft/adapter_config.json",
                             dir / "adapter_config.json");
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  std::uint64_t seed = 1;
  const auto keys = read_json("keys.json");
  for (const auto& t : keys["tensors"]) {
    const auto rows = t["shape"][0].get<index_t>(), cols = t["shape"][1].get<index_t>();
    w.add(t["name"].get<std::string>(), test::random_tensor<Tensor<T, Dyn, Dyn>>(seed++, -1, 1, rows, cols));
  }
  w.write(dir / "adapter_model.safetensors");
  return dir;
}

void write_text(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("LoRA tensor names equal the ones PEFT saves for Gemma 3") {
    const auto keys = read_json("keys.json");
    std::set<std::string> theirs;
    for (const auto& t : keys["tensors"]) theirs.insert(t["name"].get<std::string>());
    std::set<std::string> ours;
    for (index_t layer = 0; layer < 2; ++layer)
      for (int p = 0; p < 7; ++p)
        for (auto m : {peft::LoraMatrix::A, peft::LoraMatrix::B})
          ours.insert(peft::tensor_name(layer, static_cast<Projection>(p), m));
    CHECK(ours == theirs);
    CHECK(keys["metadata"]["format"] == "pt");
    for (const auto& t : keys["tensors"]) CHECK(t["dtype"] == "torch.float32");
  }

  TEST_CASE("PEFT tensor names parse back to layer, projection and matrix") {
    const auto t = peft::parse_tensor_name("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight");
    REQUIRE(t.has_value());
    CHECK(t->layer == 17);
    CHECK(t->projection == Projection::down_proj);
    CHECK(t->matrix == peft::LoraMatrix::B);
    const auto mm = peft::parse_tensor_name("base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight");
    REQUIRE(mm.has_value());
    CHECK(mm->layer == 3);
    CHECK_FALSE(peft::parse_tensor_name("base_model.model.model.layers.1.self_attn.q_proj.weight").has_value());
    CHECK_FALSE(peft::parse_tensor_name("lm_head.weight").has_value());
    CHECK(peft::tensor_name(3, Projection::q_proj, peft::LoraMatrix::A, peft::ModelLayout::conditional_generation) ==
          "base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight");
  }

  TEST_CASE("adapter_config.json carries PEFT's values for every key it shares with PEFT's file") {
    const auto theirs = read_json("adapter_config.json");
    LoraConfig c;
    c.r = 4;
    c.lora_alpha = 8;
    c.lora_dropout = 0.05;
    c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    const auto ours = nlohmann::json::parse(peft::adapter_config_text(c, ""));
    for (const auto& item : ours.items()) {
      const std::string& key = item.key();
      const auto& value = item.value();
      INFO("key " << key);
      REQUIRE(theirs.contains(key));
      if (key == "target_modules") {
        CHECK(std::set<std::string>(value.begin(), value.end()) ==
              std::set<std::string>(theirs[key].begin(), theirs[key].end()));
      } else {
        CHECK(value == theirs[key]);
      }
    }
    const LoraConfig back = peft::lora_config_from_adapter_config(theirs, "adapter_config.json");
    CHECK(back.r == 4);
    CHECK(back.lora_alpha == 8);
    CHECK(back.target_modules.size() == 7);
  }

  // Gemma4ForConditionalGeneration: PEFT refuses the towers' modules of the same names, so the targets are a regex
  // over the text model (the string PEFT takes and writes back, checked by compat.peft_loads_our_gemma4_adapters).
  TEST_CASE("text-model-only targets are written as PEFT's regex string and read back as names") {
    LoraConfig c;
    c.target_modules = {"q_proj", "down_proj"};
    c.text_model_only = true;
    const nlohmann::json j = peft::adapter_config(c, "base");
    CHECK(j["target_modules"] == ".*language_model.*\\.(q_proj|down_proj)");
    const LoraConfig back = peft::lora_config_from_adapter_config(j, "a.json");
    CHECK(back.text_model_only);
    CHECK(back.target_modules == std::vector<std::string>{"q_proj", "down_proj"});
    nlohmann::json other = j;  // any other string stays PEFT's comma-free name list
    other["target_modules"] = "q_proj,v_proj";
    const LoraConfig plain = peft::lora_config_from_adapter_config(other, "b.json");
    CHECK_FALSE(plain.text_model_only);
    CHECK(plain.target_modules == std::vector<std::string>{"q_proj", "v_proj"});
    CHECK_FALSE(peft::names_of_text_model_regex(".*language_model.*\\.(q_proj|)"));
    CHECK_FALSE(peft::names_of_text_model_regex(".*language_model.*\\.(q.*)"));
  }

  TEST_CASE("adapters qlora cannot honour are refused by name") {
    auto j = read_json("adapter_config.json");
    j["use_dora"] = true;
    CHECK_THROWS_WITH_AS(peft::lora_config_from_adapter_config(j, "a.json"), "[peft] a.json: DoRA adapters are not supported",
                         Error);
  }

  TEST_CASE("a PEFT adapter folder loads with its config, names and shapes") {
    const auto dir = peft_folder<float>("qlora_peft_load");
    const peft::Adapter a = peft::load_adapter(dir);
    CHECK(a.config.r == 4);
    CHECK(a.config.lora_alpha == 8);
    CHECK(a.config.lora_dropout == doctest::Approx(0.05));
    CHECK(a.config.target_modules.size() == 7);
    CHECK(a.base_model_name_or_path.empty());
    const auto keys = read_json("keys.json")["tensors"];
    REQUIRE(a.tensors.size() == keys.size());
    const SafetensorsFile file(dir / "adapter_model.safetensors");
    for (std::size_t i = 0; i < keys.size(); ++i) {
      INFO(keys[i]["name"]);
      CHECK(a.tensors[i].name == keys[i]["name"]);
      CHECK(a.tensors[i].value.size(0) == keys[i]["shape"][0]);
      CHECK(a.tensors[i].value.size(1) == keys[i]["shape"][1]);
      CHECK(a.tensors[i].value.to_vector() == file.read<float, Dyn, Dyn>(a.tensors[i].name).to_vector());
    }
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("bf16 and f16 adapter weights are converted to fp32 exactly") {
    const auto dir = peft_folder<bf16>("qlora_peft_bf16");
    const peft::Adapter a = peft::load_adapter(dir);
    const SafetensorsFile file(dir / "adapter_model.safetensors");
    const auto stored = file.read<bf16, Dyn, Dyn>(a.tensors[0].name).to_vector();
    const auto loaded = a.tensors[0].value.to_vector();
    REQUIRE(stored.size() == loaded.size());
    for (std::size_t i = 0; i < stored.size(); ++i) CHECK(loaded[i] == convert<float>(stored[i]));
    std::filesystem::remove_all(dir);
    const auto dir16 = peft_folder<f16>("qlora_peft_f16");
    CHECK(peft::load_adapter(dir16).tensors.size() == 28);
    std::filesystem::remove_all(dir16);
  }

  TEST_CASE("save_adapter then load_adapter gives back the config and bit-identical tensors") {
    LoraConfig c;
    c.r = 2;
    c.lora_alpha = 16;
    c.lora_dropout = 0.1;
    c.target_modules = {"q_proj", "v_proj"};
    c.use_rslora = true;
    const std::string a_name = peft::tensor_name(0, Projection::q_proj, peft::LoraMatrix::A);
    const std::string b_name = peft::tensor_name(0, Projection::q_proj, peft::LoraMatrix::B);
    const std::vector<peft::AdapterTensor> tensors{
        {a_name, test::random_tensor<Tensor<float, Dyn, Dyn>>(5, -1, 1, 2, 8)},
        {b_name, test::random_tensor<Tensor<float, Dyn, Dyn>>(6, -1e-30, 1e30, 4, 2)}};
    const auto dir = fresh_dir("qlora_peft_roundtrip") / "nested";
    peft::save_adapter(dir, c, "google/gemma-3-270m", tensors);
    const SafetensorsFile file(dir / "adapter_model.safetensors");
    CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
    const peft::Adapter back = peft::load_adapter(dir);
    CHECK(back.config.r == 2);
    CHECK(back.config.lora_alpha == 16);
    CHECK(back.config.lora_dropout == 0.1);
    CHECK(back.config.use_rslora);
    CHECK(back.config.target_modules == c.target_modules);
    CHECK(back.base_model_name_or_path == "google/gemma-3-270m");
    REQUIRE(back.tensors.size() == 2);
    CHECK(back.tensors[0].name == a_name);
    CHECK(back.tensors[0].value.to_vector() == tensors[0].value.to_vector());
    CHECK(back.tensors[1].value.to_vector() == tensors[1].value.to_vector());
    for (const auto& entry : std::filesystem::directory_iterator(dir))  // no temporary files left
      CHECK((entry.path().filename() == "adapter_config.json" ||
             entry.path().filename() == "adapter_model.safetensors"));
    std::filesystem::remove_all(dir.parent_path());
  }

  TEST_CASE("save_adapter refuses names that are not LoRA weights") {
    const auto dir = fresh_dir("qlora_peft_badsave");
    const std::vector<peft::AdapterTensor> head{{"lm_head.weight", Tensor<float, Dyn, Dyn>::zeros(2, 2)}};
    CHECK_THROWS_WITH_AS(peft::save_adapter(dir, LoraConfig{}, "", head),
                         doctest::Contains("tensor lm_head.weight is not a LoRA weight name"), Error);
    CHECK_FALSE(std::filesystem::exists(dir / "adapter_model.safetensors"));
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("broken adapter folders are refused naming the file") {
    const auto check = [](const std::filesystem::path& dir, const std::string& expected) {
      CHECK_THROWS_WITH_AS(peft::load_adapter(dir), doctest::Contains(expected.c_str()), Error);
    };
    const auto missing = fresh_dir("qlora_peft_nothing");
    check(missing, "[peft] " + missing.string() + ": no such folder");

    const auto dir = peft_folder<float>("qlora_peft_broken");
    const auto weights = dir / "adapter_model.safetensors", config = dir / "adapter_config.json";
    std::filesystem::rename(weights, dir / "adapter_model.bin");
    check(dir, "[peft] " + (dir / "adapter_model.bin").string() + ": .bin (pickle) adapters are not supported");
    std::filesystem::remove(dir / "adapter_model.bin");
    check(dir, "[peft] " + weights.string() + ": missing");

    const auto good = peft_folder<float>("qlora_peft_good");
    std::filesystem::copy_file(good / "adapter_model.safetensors", weights);
    std::filesystem::remove(config);
    check(dir, "[peft] " + config.string() + ": missing");
    write_text(config, "{\"r\": 4,");
    check(dir, "[peft] " + config.string() + ": not valid JSON");
    write_text(config, R"({"peft_type": "LORA", "lora_alpha": 8, "target_modules": ["q_proj"]})");
    check(dir, "[peft] " + config.string() + ": [json.exception.out_of_range.403] key 'r' not found");

    std::filesystem::copy_file(good / "adapter_config.json", config, std::filesystem::copy_options::overwrite_existing);
    SafetensorsWriter extra;
    extra.add(peft::tensor_name(0, Projection::q_proj, peft::LoraMatrix::A), Tensor<float, Dyn, Dyn>::zeros(4, 32));
    extra.add("base_model.model.lm_head.weight", Tensor<float, Dyn, Dyn>::zeros(2, 2));
    extra.add("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight",
              Tensor<float, Dyn, Dyn>::zeros(2, 2));
    extra.write(weights);
    check(dir, "[peft] " + weights.string() + ": tensors that are not LoRA weights of a layer: "
                                             "base_model.model.lm_head.weight, "
                                             "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight");
    SafetensorsWriter flat;
    flat.add(peft::tensor_name(1, Projection::up_proj, peft::LoraMatrix::B), Tensor<float, Dyn>::zeros(8));
    flat.write(weights);
    check(dir, "[peft] " + weights.string() + ": tensor base_model.model.model.layers.1.mlp.up_proj.lora_B.weight: "
                                             "shape [8] is not 2-D");
    SafetensorsWriter ints;
    ints.add(peft::tensor_name(1, Projection::up_proj, peft::LoraMatrix::B),
             Tensor<std::int32_t, Dyn, Dyn>::zeros(8, 4));
    ints.write(weights);
    check(dir, "dtype I32 is not a floating-point weight");
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(good);
  }
}
