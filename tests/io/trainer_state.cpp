// trainer_state.json: the HF Trainer's key names, a round trip of everything qlora reads back, a file written by the
// HF Trainer reads (without a data position), and damaged files are refused naming the file and the key.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

#include <qlora/io/trainer_state.hpp>

using namespace qlora;

namespace {
std::filesystem::path trainer_state_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("qlora_trainer_state" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}
void write_state_text(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

// As transformers 4.5x writes it after 2 steps with logging_steps 1 (keys trimmed to the ones that matter).
constexpr const char* hf_file = R"({
  "best_global_step": null,
  "best_metric": null,
  "best_model_checkpoint": null,
  "epoch": 0.5,
  "eval_steps": 500,
  "global_step": 2,
  "is_hyper_param_search": false,
  "is_local_process_zero": true,
  "is_world_process_zero": true,
  "log_history": [
    {"epoch": 0.25, "grad_norm": 1.5, "learning_rate": 5e-05, "loss": 2.75, "step": 1},
    {"epoch": 0.5, "grad_norm": 1.25, "learning_rate": 2.5e-05, "loss": 2.5, "step": 2}
  ],
  "logging_steps": 1,
  "max_steps": 4,
  "num_input_tokens_seen": 0,
  "num_train_epochs": 1,
  "save_steps": 2,
  "stateful_callbacks": {"TrainerControl": {"args": {"should_save": true}, "attributes": {}}},
  "total_flos": 1234.0,
  "train_batch_size": 8,
  "trial_name": null,
  "trial_params": null
}
)";
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("trainer_state.json round-trips the state with the HF key names and qlora's data position and seed") {
    TrainerState s;
    s.global_step = 6;
    s.epoch = 6.0 / 7.0;
    s.log_history = {{{"loss", 0.5}, {"learning_rate", 1e-4}, {"step", 6}}, {{"eval_loss", NAN}, {"step", 6}}};
    s.data_position = DataPosition{0, 12};
    s.seed = 18446744073709551615ull;
    s.max_steps = 8;
    s.logging_steps = 1;
    s.eval_steps = 1;
    s.save_steps = 2;
    s.train_batch_size = 4;
    s.num_train_epochs = 3;
    const auto path = trainer_state_file("trainer_state.json");
    save_trainer_state(s, path);
    const auto j = nlohmann::json::parse(std::ifstream(path));
    for (const char* key : {"global_step", "epoch", "log_history", "max_steps", "logging_steps", "eval_steps",
                            "save_steps", "train_batch_size", "num_train_epochs", "best_metric", "total_flos"})
      CHECK_MESSAGE(j.contains(key), key);
    CHECK(j["log_history"][0]["step"].is_number_integer());
    CHECK(j["log_history"][1]["eval_loss"].is_null());
    CHECK(j["data_position"] == nlohmann::json{{"epoch", 0}, {"micro_batches", 12}});

    const TrainerState back = load_trainer_state(path);
    CHECK(back.global_step == 6);
    CHECK(back.epoch == s.epoch);
    REQUIRE(back.log_history.size() == 2);
    CHECK(back.log_history[0] == s.log_history[0]);
    CHECK(std::isnan(back.log_history[1].at("eval_loss")));
    CHECK(back.data_position == s.data_position);
    CHECK(back.seed == s.seed);
    CHECK(back.max_steps == 8);
    CHECK(back.save_steps == 2);
    CHECK(back.train_batch_size == 4);
    CHECK(back.num_train_epochs == 3);
    std::filesystem::remove_all(path.parent_path());
  }

  TEST_CASE("a trainer_state.json written by the HF Trainer reads, without a data position") {
    const auto path = trainer_state_file("hf_trainer_state.json");
    write_state_text(path, hf_file);
    const TrainerState s = load_trainer_state(path);
    CHECK(s.global_step == 2);
    CHECK(s.epoch == 0.5);
    REQUIRE(s.log_history.size() == 2);
    CHECK(s.log_history[1].at("loss") == 2.5);
    CHECK(s.log_history[1].at("step") == 2);
    CHECK_FALSE(s.data_position.has_value());
    CHECK(s.max_steps == 4);
    std::filesystem::remove_all(path.parent_path());
  }

  TEST_CASE("damaged trainer_state.json files are refused naming the file and the key") {
    const auto path = trainer_state_file("bad.json");
    const std::string where = "[trainer_state] " + path.string() + ": ";
    const auto check = [&](const std::string& text, const std::string& expected) {
      write_state_text(path, text);
      CHECK_THROWS_WITH_AS(load_trainer_state(path), doctest::Contains((where + expected).c_str()), Error);
    };
    check(R"({"global_step": 3,)", "not valid JSON");
    check("[1, 2]", "not a JSON object");
    check(R"({"epoch": 1.0})", "missing \"global_step\"");
    check(R"({"global_step": -1})", "\"global_step\" is -1, not a count");
    check(R"({"global_step": "7"})", "\"global_step\" is \"7\", not a count");
    check(R"({"global_step": 2, "log_history": {}})", "\"log_history\" is not a list");
    check(R"({"global_step": 2, "log_history": [3]})", "log_history[0] is not an object");
    check(R"({"global_step": 2, "data_position": {"epoch": 0}})", "data_position: missing \"micro_batches\"");
    check(R"({"global_step": 2, "seed": -5})", "\"seed\" is -5, not a non-negative integer");
    std::filesystem::remove(path);
    CHECK_THROWS_WITH_AS(load_trainer_state(path), doctest::Contains((where + "cannot open").c_str()), Error);
    std::filesystem::remove_all(path.parent_path());
  }
}
