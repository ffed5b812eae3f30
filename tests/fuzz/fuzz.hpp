// Shared by the libFuzzer targets (tests/fuzz/*.cpp; docs/reliability.md says how to build and run them). The readers
// take paths, so each input is written to a file in a per-process scratch folder (tmpfs where there is one) and read
// back from there. A target passes an input when the reader returns or throws qlora::Error; any other exception,
// a crash, a hang, a leak or a sanitizer report is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <unistd.h>

#include <qlora/core/error.hpp>

namespace qlora::fuzz {

inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    const auto d = base / ("qlora_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::filesystem::path write(const std::string& name, std::string_view bytes) {
  const auto path = scratch() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Runs fn; qlora::Error is the expected way to refuse an input. Anything else aborts (a finding).
template <class Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: an exception other than qlora::Error escaped: %s\n", e.what());
    std::abort();
  }
}

// The input cut in two at a 4-byte little-endian length (clamped), for targets that read two files.
inline std::pair<std::string_view, std::string_view> split(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return {{}, {}};
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(data[i]) << (8 * i);
  const std::string_view rest(reinterpret_cast<const char*>(data + 4), size - 4);
  const std::size_t cut = std::min<std::size_t>(n, rest.size());
  return {rest.substr(0, cut), rest.substr(cut)};
}

}  // namespace qlora::fuzz
