// Training metrics as JSON Lines: one object per logging event ({"step": 10, "epoch": 0.5, "loss": 2.31, ...}),
// appended and flushed as they happen so a crash loses nothing already logged. Non-finite values are written as
// null (JSON has no NaN) with the key "nonfinite" listing them.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

namespace qlora {

class MetricsLog {
 public:
  explicit MetricsLog(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    out_.open(path, std::ios::app);
    if (!out_) fail("metrics", path.string(), ": cannot open for appending");
  }
  void write(long step, const std::map<std::string, double>& values) {
    nlohmann::json line;
    line["step"] = step;
    nlohmann::json nonfinite = nlohmann::json::array();
    for (const auto& [key, value] : values) {
      if (std::isfinite(value)) {
        line[key] = value;
      } else {
        line[key] = nullptr;
        nonfinite.push_back(key);
      }
    }
    if (!nonfinite.empty()) line["nonfinite"] = nonfinite;
    out_ << line.dump() << '\n';
    out_.flush();
    if (!out_) fail("metrics", path_.string(), ": write failed");
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace qlora
