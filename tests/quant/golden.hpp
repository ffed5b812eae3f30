// Golden data written by tests/golden/bnb_quant.py with the real bitsandbytes: reads tests/data/bnb/manifest.json
// and its raw little-endian arrays, and compares results bit for bit, reporting the first differing index with
// both values. QLORA_TEST_DATA_DIR (absolute path of tests/data) is defined by the build.
#pragma once

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#ifndef QLORA_TEST_DATA_DIR
#error "QLORA_TEST_DATA_DIR must name the absolute path of tests/data"
#endif

namespace golden {

inline std::string bnb_dir() { return std::string(QLORA_TEST_DATA_DIR) + "/bnb/"; }

inline const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(bnb_dir() + "manifest.json");
    REQUIRE_MESSAGE(in.good(), "cannot open ", bnb_dir(), "manifest.json (run tests/golden/bnb_quant.py)");
    return nlohmann::json::parse(in);
  }();
  return m;
}

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else return "uint8";
}

// Loads one array entry {"file", "dtype", "shape"} of the manifest, checking dtype and byte count.
template <class T>
std::vector<T> load(const nlohmann::json& entry) {
  static_assert(std::endian::native == std::endian::little, "golden files are little-endian");
  REQUIRE(entry.at("dtype").template get<std::string>() == dtype_name<T>());
  std::size_t count = 1;
  for (const auto& d : entry.at("shape")) count *= d.template get<std::size_t>();
  const std::string path = bnb_dir() + entry.at("file").template get<std::string>();
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE_MESSAGE(bytes.size() == count * sizeof(T), path, " has ", bytes.size(), " bytes, expected ", count * sizeof(T));
  std::vector<T> out(count);
  if (count != 0) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

inline std::vector<float> table(const char* name) { return load<float>(manifest().at("tables").at(name)); }

// The input of a case; blockwise-8 cases with "input_abs" quantized |input| (unsigned maps hold non-negative values).
inline std::vector<float> case_input(const nlohmann::json& c) {
  std::vector<float> x = load<float>(manifest().at("inputs").at(c.at("input").get<std::string>()));
  if (c.value("input_abs", false))
    for (float& v : x) v = std::fabs(v);
  return x;
}

inline std::vector<nlohmann::json> cases(const char* kind) {
  std::vector<nlohmann::json> out;
  for (const auto& c : manifest().at("cases"))
    if (c.at("kind").get<std::string>() == kind) out.push_back(c);
  return out;
}

inline std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

inline std::string show(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", static_cast<double>(v), bits(v));
  return buf;
}
inline std::string show(std::uint8_t v) { return std::to_string(static_cast<int>(v)); }

// "" when got and want are bitwise identical, else the first differing index, both values and the mismatch count.
template <class T>
std::string first_difference(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
  std::size_t first = got.size(), count = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool same = std::memcmp(&got[i], &want[i], sizeof(T)) == 0;
    if (!same && count++ == 0) first = i;
  }
  if (count == 0) return "";
  std::ostringstream os;
  os << count << " of " << got.size() << " differ; first at index " << first << ": got " << show(got[first])
     << ", bitsandbytes " << show(want[first]);
  return os.str();
}

}  // namespace golden

// Checks bitwise equality, naming the case and the array on failure.
#define CHECK_BITWISE_EQUAL(got, want, what)                        \
  do {                                                              \
    const std::string qlora_diff_ = golden::first_difference((got), (want)); \
    CHECK_MESSAGE(qlora_diff_.empty(), (what), ": ", qlora_diff_);      \
  } while (0)
