// Checkpoint folders: published atomically, a failed save leaves nothing half-written, rotation keeps the newest
// save_total_limit, and latest() finds the folder to resume from.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

#include <qlora/io/checkpoint.hpp>

using namespace qlora;

namespace {
std::filesystem::path fresh_dir(const char* name) {
  const auto d = std::filesystem::temp_directory_path() / (std::string(name) + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}
void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p) << text;
}
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("checkpoints are published under checkpoint-<step> and rotated to save_total_limit") {
    CheckpointDirectory dir(fresh_dir("qlora_ckpt_rotate"));
    for (long step : {10, 20, 30}) {
      dir.save(step, [&](const std::filesystem::path& f) { write_file(f / "state.txt", std::to_string(step)); }, 2);
    }
    const auto all = dir.list();
    REQUIRE(all.size() == 2);
    CHECK(all[0].first == 20);
    CHECK(all[1].first == 30);
    CHECK(dir.latest()->filename() == "checkpoint-30");
    std::filesystem::remove_all(dir.root());
  }

  TEST_CASE("a save that fails leaves no checkpoint and keeps the previous ones") {
    CheckpointDirectory dir(fresh_dir("qlora_ckpt_fail"));
    dir.save(1, [](const std::filesystem::path& f) { write_file(f / "a", "ok"); });
    CHECK_THROWS_WITH_AS(dir.save(2, [](const std::filesystem::path& f) {
      write_file(f / "a", "half");
      throw std::runtime_error("disk full");
    }), doctest::Contains("not saved: disk full"), Error);
    const auto all = dir.list();
    REQUIRE(all.size() == 1);
    CHECK(all[0].first == 1);
    CHECK_FALSE(std::filesystem::exists(dir.root() / "checkpoint-2.partial"));
    std::filesystem::remove_all(dir.root());
  }

  TEST_CASE("a folder left by a killed save is ignored and cleaned up") {
    CheckpointDirectory dir(fresh_dir("qlora_ckpt_partial"));
    std::filesystem::create_directories(dir.root() / "checkpoint-5.partial");
    std::filesystem::create_directories(dir.root() / "checkpoint-abc");
    CHECK(dir.list().empty());
    CHECK_FALSE(dir.latest().has_value());
    CHECK(dir.remove_partial() == 1);
    CHECK_FALSE(std::filesystem::exists(dir.root() / "checkpoint-5.partial"));
    CHECK(std::filesystem::exists(dir.root() / "checkpoint-abc"));  // not ours: left alone
    CHECK(dir.remove_partial() == 0);
    std::filesystem::remove_all(dir.root());
  }
}
