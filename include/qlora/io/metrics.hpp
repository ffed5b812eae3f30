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

  // A run resumed from the checkpoint of `last_kept_step` (-1: a fresh start): the lines of later steps (logged by
  // the run that was stopped after that checkpoint, and a line a kill cut short) are dropped, so each step has one
  // record, as transformers' log_history in trainer_state.json. The file is rewritten beside itself and renamed
  // over it.
  void resume_after(long last_kept_step) {
    out_.close();
    std::ifstream in(path_);
    std::string kept, line;
    while (std::getline(in, line)) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        continue;  // a line cut short by a kill
      }
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() || j["step"].get<long>() > last_kept_step)
        continue;
      kept += line;
      kept += '\n';
    }
    in.close();
    const std::filesystem::path tmp = path_.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << kept;
      out.flush();
      if (!out) fail("metrics", tmp.string(), ": write failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path_, ec);
    if (ec) fail("metrics", path_.string(), ": cannot replace: ", ec.message());
    out_.open(path_, std::ios::app);
    if (!out_) fail("metrics", path_.string(), ": cannot open for appending");
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace qlora
