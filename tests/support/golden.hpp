// Reading golden data written by the scripts in tests/golden/: a folder under tests/data holding manifest.json
// ({"arrays": {name: {"file", "dtype", "shape"}}, "params": {...}, and the versions of the reference libraries}) and
// raw little-endian arrays. QLORA_TEST_DATA_DIR (absolute path of tests/data) is defined by the build.
//
//   const test::GoldenSet set("gemma3_ops");
//   const auto x = set.floats("rmsnorm_x");          // x.values: std::vector<float>, x.shape: {6, 640}
//   const double eps = set.params("rmsnorm").at("eps");
#pragma once

#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "check.hpp"

#ifndef QLORA_TEST_DATA_DIR
#error "QLORA_TEST_DATA_DIR must name the absolute path of tests/data"
#endif

namespace qlora::test {

// One array of a golden set with its shape.
template <class V>
struct GoldenArray {
  std::vector<V> values;
  std::vector<index_t> shape;
  index_t numel() const { return static_cast<index_t>(values.size()); }
};

class GoldenSet {
 public:
  // Opens tests/data/<folder>/manifest.json (fails the test, naming the script to run, when it is missing).
  explicit GoldenSet(const std::string& folder) : dir_(std::string(QLORA_TEST_DATA_DIR) + "/" + folder + "/") {
    std::ifstream in(dir_ + "manifest.json");
    REQUIRE_MESSAGE(in.good(), "cannot open ", dir_, "manifest.json (run the matching script in tests/golden/)");
    manifest_ = nlohmann::json::parse(in);
  }

  const nlohmann::json& manifest() const { return manifest_; }
  const nlohmann::json& params(const std::string& name) const { return manifest_.at("params").at(name); }
  bool has(const std::string& name) const { return manifest_.at("arrays").contains(name); }

  GoldenArray<float> floats(const std::string& name) const { return load<float>(name, "float32"); }
  GoldenArray<double> doubles(const std::string& name) const { return load<double>(name, "float64"); }
  GoldenArray<std::int32_t> ints(const std::string& name) const { return load<std::int32_t>(name, "int32"); }

 private:
  // Loads `name`, checking its dtype and that the file holds exactly the shape's byte count.
  template <class V>
  GoldenArray<V> load(const std::string& name, const char* dtype) const {
    static_assert(std::endian::native == std::endian::little, "golden files are little-endian");
    REQUIRE_MESSAGE(has(name), "golden array '", name, "' is not in ", dir_, "manifest.json");
    const nlohmann::json& entry = manifest_.at("arrays").at(name);
    REQUIRE_MESSAGE(entry.at("dtype").get<std::string>() == dtype, name, " is ", entry.at("dtype"), ", not ", dtype);
    GoldenArray<V> out;
    std::size_t count = 1;
    for (const auto& d : entry.at("shape")) {
      out.shape.push_back(d.get<index_t>());
      count *= d.get<std::size_t>();
    }
    const std::string path = dir_ + entry.at("file").get<std::string>();
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open ", path);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE_MESSAGE(bytes.size() == count * sizeof(V), path, " has ", bytes.size(), " bytes, its shape needs ",
                    count * sizeof(V));
    out.values.resize(count);
    if (count) std::memcpy(out.values.data(), bytes.data(), bytes.size());
    return out;
  }

  std::string dir_;
  nlohmann::json manifest_;
};

// tests/golden/gemma3_attention.py's hash_uniform: amplitude · (u / 2^23 − 1), u the top 24 bits of a 32-bit hash of
// the element index and the seed — inputs the golden scripts and the tests make alike without storing them.
template <class TensorType, class... Ns>
TensorType hash_uniform(std::uint64_t seed, double amplitude, Ns... extents) {
  auto t = TensorType::zeros(extents...);
  for (index_t i = 0; i < t.numel(); ++i) {
    std::uint64_t u = (static_cast<std::uint64_t>(i) * 2654435761u + seed * 40503u) & 0xffffffffu;
    u ^= u >> 15;
    u = (u * 2246822519u) & 0xffffffffu;
    u ^= u >> 13;
    u = (u * 3266489917u) & 0xffffffffu;
    u ^= u >> 16;
    const double x = (static_cast<double>(u >> 8) / 8388608.0 - 1.0) * amplitude;
    t.data()[i] = convert<typename TensorType::value_type>(static_cast<float>(x));
  }
  return t;
}

}  // namespace qlora::test

// Compares a result with its golden reference (|got - want| <= atol + rtol |want|), printing the worst error.
#define QLORA_CHECK_GOLDEN(got, want, atol, rtol, what)                                                      \
  do {                                                                                                       \
    const auto golden_closeness_ = ::qlora::test::compare((got), (want), (atol), (rtol));                    \
    MESSAGE((what), ": max abs error ", golden_closeness_.max_abs, " at element ", golden_closeness_.worst); \
    CHECK(golden_closeness_.ok);                                                                             \
  } while (0)
