// Reading a JSON file (config.json, generation_config.json, ...) with errors that name the file and what read it.
#pragma once

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

namespace qlora::detail {

// The parsed file; fails as "[what] <path>: cannot open" or "[what] <path>: not valid JSON: ...".
inline nlohmann::json read_json_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, path.string(), ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(what, path.string(), ": not valid JSON: ", e.what());
  }
}

}  // namespace qlora::detail
