// Parquet data sets (Hugging Face datasets publish theirs as Parquet shards) read through Apache Arrow's C++ library.
//
// Each row becomes a Record, a JSON object, as a JSON Lines file would give it: text columns are strings, numbers
// and booleans stay numbers and booleans, a missing value is null, lists are arrays and structs are objects (a
// ShareGPT `conversations` column, list<struct<from, value>>, is an array of {"from", "value"} objects), dictionary
// columns are their values, bytes (an image column) are JSON binary values, which a template refuses to use as text,
// and any other type (dates, timestamps, decimals) is the text Arrow writes for it. Records are named
// "train.parquet: row 7" (1-based) in messages. Text that is not UTF-8 is an Error naming the row and column.
//
// This header needs Arrow and Parquet (the qlora::parquet CMake target: a system install, or the copy inside the
// pyarrow wheel: `pip install pyarrow`). load_records() reads .parquet once install_parquet_reader() has run; a
// program built without it names the file and says how to get Parquet support.
#pragma once

#if !__has_include(<parquet/arrow/reader.h>)
#error "qlora/data/parquet.hpp needs Apache Arrow's Parquet headers: link the qlora::parquet target (pip install pyarrow, then reconfigure)"
#endif

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/reader.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "records.hpp"

namespace qlora {

namespace detail {

// Where a value sits, for messages: "train.parquet: row 7, column conversations".
struct ParquetCell {
  const std::string& path;
  std::int64_t row;
  const std::string& column;
  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    qlora::fail("dataset", path, ": row ", row, ", column ", column, parts...);
  }
};

inline nlohmann::json json_of(const arrow::Scalar& s, const ParquetCell& at);

// Element `i` of `array` as JSON.
inline nlohmann::json json_of_element(const arrow::Array& array, std::int64_t i, const ParquetCell& at) {
  const auto scalar = array.GetScalar(i);
  if (!scalar.ok()) at.fail(": ", scalar.status().ToString());
  return json_of(**scalar, at);
}

template <class S>
auto scalar_value(const arrow::Scalar& s) {
  return static_cast<const S&>(s).value;
}

inline nlohmann::json json_of(const arrow::Scalar& s, const ParquetCell& at) {
  if (!s.is_valid) return nullptr;
  switch (s.type->id()) {
    case arrow::Type::NA: return nullptr;
    case arrow::Type::BOOL: return scalar_value<arrow::BooleanScalar>(s);
    case arrow::Type::INT8: return scalar_value<arrow::Int8Scalar>(s);
    case arrow::Type::INT16: return scalar_value<arrow::Int16Scalar>(s);
    case arrow::Type::INT32: return scalar_value<arrow::Int32Scalar>(s);
    case arrow::Type::INT64: return scalar_value<arrow::Int64Scalar>(s);
    case arrow::Type::UINT8: return scalar_value<arrow::UInt8Scalar>(s);
    case arrow::Type::UINT16: return scalar_value<arrow::UInt16Scalar>(s);
    case arrow::Type::UINT32: return scalar_value<arrow::UInt32Scalar>(s);
    case arrow::Type::UINT64: return scalar_value<arrow::UInt64Scalar>(s);
    case arrow::Type::FLOAT: return scalar_value<arrow::FloatScalar>(s);
    case arrow::Type::DOUBLE: return scalar_value<arrow::DoubleScalar>(s);
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
    case arrow::Type::STRING_VIEW: {
      std::string text = static_cast<const arrow::BaseBinaryScalar&>(s).value->ToString();
      if (const auto bad = first_invalid_utf8(text)) at.fail(": invalid UTF-8 at byte ", *bad + 1);
      return text;
    }
    case arrow::Type::BINARY:
    case arrow::Type::LARGE_BINARY:
    case arrow::Type::BINARY_VIEW:
    case arrow::Type::FIXED_SIZE_BINARY: {  // e.g. an image column: kept as bytes, refused only where used as text
      const auto& bytes = *static_cast<const arrow::BaseBinaryScalar&>(s).value;
      return nlohmann::json::binary(std::vector<std::uint8_t>(bytes.data(), bytes.data() + bytes.size()));
    }
    case arrow::Type::LIST:
    case arrow::Type::LARGE_LIST:
    case arrow::Type::FIXED_SIZE_LIST:
    case arrow::Type::LIST_VIEW:
    case arrow::Type::LARGE_LIST_VIEW:
    case arrow::Type::MAP: {
      const auto& values = *static_cast<const arrow::BaseListScalar&>(s).value;
      nlohmann::json array = nlohmann::json::array();
      for (std::int64_t i = 0; i < values.length(); ++i) array.push_back(json_of_element(values, i, at));
      return array;
    }
    case arrow::Type::STRUCT: {
      const auto& fields = static_cast<const arrow::StructScalar&>(s).value;
      nlohmann::json object = nlohmann::json::object();
      for (int i = 0; i < s.type->num_fields(); ++i)
        object[s.type->field(i)->name()] = json_of(*fields[static_cast<std::size_t>(i)], at);
      return object;
    }
    case arrow::Type::DICTIONARY: {
      const auto value = static_cast<const arrow::DictionaryScalar&>(s).GetEncodedValue();
      if (!value.ok()) at.fail(": ", value.status().ToString());
      return json_of(**value, at);
    }
    default: return s.ToString();
  }
}

template <class T>
T parquet_ok(arrow::Result<T> result, const std::string& path) {
  if (!result.ok()) fail("dataset", path, ": cannot read it as Parquet: ", printable(result.status().message()));
  return std::move(result).ValueUnsafe();
}

}  // namespace detail

// Every row of a Parquet file as a Record (all row groups, all columns).
inline std::vector<Record> load_parquet_records(const std::string& path) {
  if (!std::ifstream(path, std::ios::binary)) fail("dataset", path, ": cannot open the file");
  auto file = detail::parquet_ok(arrow::io::ReadableFile::Open(path), path);
  auto reader = detail::parquet_ok(parquet::arrow::OpenFile(file, arrow::default_memory_pool()), path);
  const auto table = detail::parquet_ok(reader->ReadTable(), path);
  if (table->num_rows() == 0) fail("dataset", path, ": the file has no rows");
  std::vector<Record> records(static_cast<std::size_t>(table->num_rows()));
  for (std::int64_t r = 0; r < table->num_rows(); ++r) {
    records[static_cast<std::size_t>(r)].fields = nlohmann::json::object();
    records[static_cast<std::size_t>(r)].where = detail::concat(path, ": row ", r + 1);
  }
  for (int c = 0; c < table->num_columns(); ++c) {
    const std::string& name = table->schema()->field(c)->name();
    const auto& column = *table->column(c);
    std::int64_t r = 0;
    for (const auto& chunk : column.chunks())
      for (std::int64_t i = 0; i < chunk->length(); ++i, ++r) {
        records[static_cast<std::size_t>(r)].fields[name] = detail::json_of_element(*chunk, i, {path, r + 1, name});
      }
  }
  return records;
}

// Lets load_records() read .parquet files (call once, e.g. at the start of main()).
inline void install_parquet_reader() { detail::parquet_record_loader() = &load_parquet_records; }

}  // namespace qlora
