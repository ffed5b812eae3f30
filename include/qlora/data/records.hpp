// Dataset records from files: JSON Lines (one object per line), a JSON array of objects, or CSV with a header row.
// Each record is a JSON object (CSV values are strings) with `where` naming it in messages: "train.jsonl:5" (line),
// "train.csv:7" (the line its row starts on) or "train.json: record 3" (1-based position in the array).
// Parquet (.parquet) needs Apache Arrow: data/parquet.hpp reads it, and load_records() hands .parquet files to it
// once install_parquet_reader() has run; without that it says how to get Parquet support.
// Blank lines in JSON Lines are skipped; anything else that is not one JSON object per line is an Error naming the
// file and line, e.g. "[dataset] train.jsonl:2: invalid JSON at column 7".
#pragma once

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fnmatch.h>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "csv.hpp"

namespace qlora {

struct Record {
  nlohmann::json fields;  // a JSON object
  std::string where;      // "file:line" or "file: record N"
};

namespace detail {
inline const char* json_type_name(const nlohmann::json& j) { return j.type_name(); }

// The reader of .parquet files, set by install_parquet_reader() (data/parquet.hpp, which needs Apache Arrow).
using RecordLoader = std::vector<Record> (*)(const std::string& path);
inline RecordLoader& parquet_record_loader() {
  static RecordLoader loader = nullptr;
  return loader;
}

// The 1-based line and column of byte `at` of `text`.
inline std::pair<std::size_t, std::size_t> line_and_column(std::string_view text, std::size_t at) {
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < at && i < text.size(); ++i)
    if (text[i] == '\n') ++line, line_start = i + 1;
  return {line, at - line_start + 1};
}

inline bool only_whitespace(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}
}  // namespace detail

inline std::vector<Record> parse_jsonl(std::string_view text, std::string_view source) {
  if (detail::only_whitespace(text)) fail("dataset", source, ": the file is empty");
  std::vector<Record> records;
  std::size_t line_number = 0, begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (line_number == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
    if (detail::only_whitespace(line)) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail("dataset", source, ":", line_number, ": invalid JSON at column ", e.byte);
    } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for any type
      fail("dataset", source, ":", line_number, ": invalid JSON: ", e.what());
    }
    if (!j.is_object())
      fail("dataset", source, ":", line_number, ": expected a JSON object, found ", detail::json_type_name(j));
    records.push_back({std::move(j), detail::concat(source, ":", line_number)});
  }
  return records;
}

inline std::vector<Record> parse_json_array(std::string_view text, std::string_view source) {
  if (detail::only_whitespace(text)) fail("dataset", source, ": the file is empty");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Count lines up to the failing byte, so the message points into the file.
    const std::size_t at = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    const auto [line, column] = detail::line_and_column(text, at);
    fail("dataset", source, ":", line, ": invalid JSON at column ", column);
  } catch (const nlohmann::json::exception& e) {
    fail("dataset", source, ": invalid JSON: ", e.what());
  }
  if (!j.is_array()) fail("dataset", source, ": expected a JSON array of objects, found ", detail::json_type_name(j));
  std::vector<Record> records;
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_object())
      fail("dataset", source, ": record ", i + 1, ": expected a JSON object, found ", detail::json_type_name(j[i]));
    records.push_back({std::move(j[i]), detail::concat(source, ": record ", i + 1)});
  }
  return records;
}

inline std::vector<Record> records_from_csv(const CsvTable& table, std::string_view source) {
  std::vector<Record> records;
  records.reserve(table.rows.size());
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    nlohmann::json object = nlohmann::json::object();
    for (std::size_t c = 0; c < table.header.size(); ++c) object[table.header[c]] = table.rows[r][c];
    records.push_back({std::move(object), detail::concat(source, ":", table.row_lines[r])});
  }
  return records;
}

// The files a data set path names: the path itself, or, when its last component holds a wildcard (`*`, `?`, `[…]`,
// as in Hugging Face's data_files="data/train-*.parquet"), the regular files of its folder that match, in name
// order; none matching is an Error. A path without a wildcard is returned as it is (load_records says what is wrong
// with it).
inline std::vector<std::string> data_files(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string pattern = p.filename().string();
  if (pattern.find_first_of("*?[") == std::string::npos) return {path};
  const fs::path folder = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) fail("dataset", path, ": no folder ", folder.string());
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(folder, ec))
    if (entry.is_regular_file() && ::fnmatch(pattern.c_str(), entry.path().filename().c_str(), FNM_PERIOD) == 0)
      files.push_back((p.has_parent_path() ? folder / entry.path().filename() : entry.path().filename()).string());
  if (ec) fail("dataset", path, ": cannot list ", folder.string(), ": ", ec.message());
  if (files.empty()) fail("dataset", path, ": no file matches");
  std::sort(files.begin(), files.end());
  return files;
}

inline std::vector<Record> load_records_of_file(const std::string& path);

// Reads records by the file's extension: .jsonl, .json (an array; or JSON Lines when it does not start with '['),
// .csv, .parquet (when a Parquet reader is installed). A wildcard in the file name reads every matching file, in
// name order, as one data set (data_files): `train-*.parquet` for a data set published in shards.
inline std::vector<Record> load_records(const std::string& path) {
  const auto files = data_files(path);
  if (files.size() == 1) return load_records_of_file(files[0]);
  std::vector<Record> all;
  for (const auto& file : files) {
    auto records = load_records_of_file(file);
    all.insert(all.end(), std::make_move_iterator(records.begin()), std::make_move_iterator(records.end()));
  }
  return all;
}

inline std::vector<Record> load_records_of_file(const std::string& path) {
  const auto ends_with = [&](std::string_view suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".parquet")) {
    if (const detail::RecordLoader parquet = detail::parquet_record_loader()) return parquet(path);
    fail("dataset", path, ": this program was built without Parquet support (Apache Arrow's C++ library): run "
         "`pip install pyarrow` and build again, or convert the file to JSON Lines: python3 -c \"import pandas as pd; "
         "pd.read_parquet('", path, "').to_json('", path.substr(0, path.size() - 8), ".jsonl', orient='records', "
         "lines=True, force_ascii=False)\"");
  }
  if (!ends_with(".jsonl") && !ends_with(".json") && !ends_with(".csv"))
    fail("dataset", path, ": unknown file type (expected .jsonl, .json, .csv or .parquet)");
  const std::string text = read_text_file(path);
  if (const auto bad = first_invalid_utf8(text)) {  // named as what it is, not as a JSON or CSV syntax error
    const auto [line, column] = detail::line_and_column(text, *bad);
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[*bad]));
    fail("dataset", path, ":", line, ": invalid UTF-8 at column ", column, " (byte ", byte, "); save the file as UTF-8");
  }
  if (ends_with(".csv")) return records_from_csv(parse_csv(text, path), path);
  if (ends_with(".json")) {
    const std::size_t first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '[') return parse_json_array(text, path);
  }
  return parse_jsonl(text, path);
}

}  // namespace qlora
