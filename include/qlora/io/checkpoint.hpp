// Checkpoint folders as the Hugging Face Trainer lays them out (<output_dir>/checkpoint-<step>/), written
// atomically: everything goes into checkpoint-<step>.partial/ first, each file is flushed to disk, and one rename
// publishes the folder. A crash mid-save leaves only a .partial folder, which the next save or resume removes, and
// the previous checkpoints untouched. After a save the oldest folders beyond save_total_limit are deleted.
// A training checkpoint holds adapter_config.json + adapter_model.safetensors (io/peft.hpp), optimizer.safetensors
// (io/optimizer_state.hpp) and trainer_state.json (io/trainer_state.hpp, with the data position that makes resuming
// exact); tests/train/resume.cpp kills runs mid-step and mid-save and resumes them bit-identically.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace qlora {

namespace detail {
inline void fsync_path(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
inline std::optional<long> checkpoint_step(const std::filesystem::path& dir) {
  const std::string name = dir.filename().string();
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stol(digits);
}
}  // namespace detail

class CheckpointDirectory {
 public:
  explicit CheckpointDirectory(std::filesystem::path output_dir) : root_(std::move(output_dir)) {}

  // The published checkpoints, oldest first.
  std::vector<std::pair<long, std::filesystem::path>> list() const {
    std::vector<std::pair<long, std::filesystem::path>> found;
    std::error_code ec;
    if (!std::filesystem::is_directory(root_, ec)) return found;
    for (const auto& entry : std::filesystem::directory_iterator(root_))
      if (entry.is_directory())
        if (const auto step = detail::checkpoint_step(entry.path())) found.emplace_back(*step, entry.path());
    std::sort(found.begin(), found.end());
    return found;
  }
  std::optional<std::filesystem::path> latest() const {
    const auto all = list();
    if (all.empty()) return std::nullopt;
    return all.back().second;
  }

  // Writes checkpoint-<step>: `write(folder)` fills the folder; it is published only if write returns normally.
  std::filesystem::path save(long step, const std::function<void(const std::filesystem::path&)>& write,
                             std::optional<long> save_total_limit = std::nullopt) {
    std::filesystem::create_directories(root_);
    remove_partial();
    const auto final_dir = root_ / ("checkpoint-" + std::to_string(step));
    const auto partial = root_ / ("checkpoint-" + std::to_string(step) + ".partial");
    std::filesystem::create_directories(partial);
    try {
      write(partial);
      for (const auto& entry : std::filesystem::directory_iterator(partial))
        if (entry.is_regular_file()) detail::fsync_path(entry.path());
      std::filesystem::remove_all(final_dir);  // re-saving the same step replaces it
      std::filesystem::rename(partial, final_dir);
      detail::fsync_path(root_);
    } catch (const std::exception& e) {
      std::error_code ec;
      std::filesystem::remove_all(partial, ec);
      fail("checkpoint", final_dir.string(), ": not saved: ", e.what());
    }
    if (save_total_limit && *save_total_limit > 0) {
      auto all = list();
      while (static_cast<long>(all.size()) > *save_total_limit) {
        std::filesystem::remove_all(all.front().second);
        all.erase(all.begin());
      }
    }
    return final_dir;
  }

  // Removes folders left by an interrupted save; returns how many.
  std::size_t remove_partial() const {
    std::error_code ec;
    if (!std::filesystem::is_directory(root_, ec)) return 0;
    std::vector<std::filesystem::path> partial;
    for (const auto& entry : std::filesystem::directory_iterator(root_)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_directory() && name.size() > 8 && name.ends_with(".partial")) partial.push_back(entry.path());
    }
    for (const auto& path : partial) std::filesystem::remove_all(path);
    return partial.size();
  }

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

}  // namespace qlora
