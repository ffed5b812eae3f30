// An RFC 4180 CSV reader: fields separated by commas, records by CRLF or LF; a field in double quotes may hold commas,
// CR/LF and doubled quotes ("" is one "). The first record is the header. A UTF-8 byte-order mark is skipped, and
// blank lines between records are skipped (as Python's csv.DictReader does).
//
// Malformed input is an Error naming the file, the line and the column (both 1-based, the column in bytes):
//   "[dataset] data.csv:4:9: unterminated quoted field"     "[dataset] data.csv:3: row has 2 fields, the header has 3"
// Strictness beyond Python's csv module: a quote inside an unquoted field, or text after a closing quote, is an error
// (Python keeps such bytes literally, which silently corrupts fields).
#pragma once

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "../core/error.hpp"

namespace qlora {

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each with header.size() fields
  std::vector<std::size_t> row_lines;          // the line each row starts on (1-based), for error messages
};

namespace detail {

// One CSV record at a time from `text`, tracking line and column for messages.
class CsvScanner {
 public:
  CsvScanner(std::string_view text, std::string_view source) : text_(text), source_(source) {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") text_.remove_prefix(3);  // UTF-8 byte-order mark
  }

  bool at_end() const { return pos_ >= text_.size(); }
  std::size_t line() const { return line_; }

  // Skips empty lines; false when nothing but empty lines was left.
  bool skip_blank_lines() {
    while (!at_end()) {
      if (text_[pos_] == '\n') {
        next_line(1);
      } else if (text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') {
        next_line(2);
      } else {
        return true;
      }
    }
    return false;
  }

  // Reads one record ending at a line break or the end of the text.
  std::vector<std::string> record() {
    std::vector<std::string> fields;
    while (true) {
      fields.push_back(field());
      if (at_end()) return fields;
      const char c = text_[pos_];
      if (c == ',') {
        advance(1);
        continue;
      }
      if (c == '\n') {
        next_line(1);
        return fields;
      }
      // field() stops only at ',', '\n', "\r\n" or the end.
      next_line(2);
      return fields;
    }
  }

 private:
  std::string field() {
    std::string out;
    if (!at_end() && text_[pos_] == '"') return quoted_field();
    while (!at_end()) {
      const char c = text_[pos_];
      if (c == ',' || c == '\n' || (c == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n')) break;
      if (c == '"')
        fail("dataset", source_, ":", line_, ":", column(), ": quote inside an unquoted field (quote the whole field "
             "and write a quote as \"\")");
      out.push_back(c);
      advance(1);
    }
    return out;
  }

  std::string quoted_field() {
    const std::size_t open_line = line_, open_column = column();
    advance(1);
    std::string out;
    while (true) {
      if (at_end()) fail("dataset", source_, ":", open_line, ":", open_column, ": unterminated quoted field");
      const char c = text_[pos_];
      if (c == '"') {
        if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {  // "" inside quotes is one quote
          out.push_back('"');
          advance(2);
          continue;
        }
        advance(1);
        break;
      }
      out.push_back(c);
      if (c == '\n') {
        next_line(1);
      } else {
        advance(1);
      }
    }
    if (!at_end()) {
      const char c = text_[pos_];
      const bool crlf = c == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n';
      if (c != ',' && c != '\n' && !crlf)
        fail("dataset", source_, ":", line_, ":", column(), ": unexpected character after a closing quote");
    }
    return out;
  }

  std::size_t column() const { return pos_ - line_start_ + 1; }
  void advance(std::size_t n) { pos_ += n; }
  void next_line(std::size_t n) {
    pos_ += n;
    ++line_;
    line_start_ = pos_;
  }

  std::string_view text_;
  std::string_view source_;
  std::size_t pos_ = 0, line_ = 1, line_start_ = 0;
};

}  // namespace detail

// Parses CSV text; `source` names it in error messages (usually the file name).
inline CsvTable parse_csv(std::string_view text, std::string_view source) {
  detail::CsvScanner scan(text, source);
  if (!scan.skip_blank_lines()) fail("dataset", source, ": the file is empty");
  CsvTable table;
  const std::size_t header_line = scan.line();
  table.header = scan.record();
  std::unordered_set<std::string> seen;
  for (const auto& name : table.header) {
    if (name.empty()) fail("dataset", source, ":", header_line, ": the header has an empty column name");
    if (!seen.insert(name).second) fail("dataset", source, ":", header_line, ": the header names '", name, "' twice");
  }
  while (scan.skip_blank_lines()) {
    const std::size_t line = scan.line();
    auto row = scan.record();
    if (row.size() != table.header.size())
      fail("dataset", source, ":", line, ": row has ", row.size(), " field", row.size() == 1 ? "" : "s",
           ", the header has ", table.header.size());
    table.rows.push_back(std::move(row));
    table.row_lines.push_back(line);
  }
  return table;
}

// Reads a whole file; an Error names the file when it cannot be opened.
inline std::string read_text_file(const std::string& path, const char* component = "dataset") {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(component, path, ": cannot open the file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

inline CsvTable read_csv(const std::string& path) { return parse_csv(read_text_file(path), path); }

}  // namespace qlora
