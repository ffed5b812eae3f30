// Bytes that claim to be text, checked and shown safely: where a file's UTF-8 breaks, and a name from a file as
// printable ASCII (control bytes and broken UTF-8 as \xNN), so an error message never carries raw bytes.
#pragma once

#include <cstddef>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace qlora {

// Length of the well-formed UTF-8 sequence at s[i] (1-4), or 0 (RFC 3629: no overlongs, surrogates, > U+10FFFF).
inline std::size_t utf8_sequence_at(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  const std::size_t left = s.size() - i;
  auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

// Offset of the first byte that does not start well-formed UTF-8, or nothing when all of `s` is UTF-8.
inline std::optional<std::size_t> first_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_at(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

// `s` for a message: printable ASCII and well-formed UTF-8 as they are, anything else as \xNN; cut after
// `max_bytes` with "...".
inline std::string printable(std::string_view s, std::size_t max_bytes = 120) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max_bytes;) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c >= 0x80 ? utf8_sequence_at(s, i) : (c >= 0x20 && c != 0x7F ? 1 : 0);
    if (n == 0) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

// A message part as a reader shows it: strings (names and keys read from a file) through printable(), anything
// else as it is.
template <class T>
decltype(auto) shown(const T& part) {
  if constexpr (std::is_convertible_v<const T&, std::string_view> && !std::is_pointer_v<std::decay_t<T>> &&
                !std::is_array_v<T>)
    return printable(std::string_view(part));
  else
    return (part);
}

// The elements of `range` (strings, or made strings by `name`) joined by `separator`: "a, b, c" in messages.
template <class Range, class Name = std::identity>
std::string joined(const Range& range, std::string_view separator = ", ", Name name = {}) {
  std::string out;
  bool first = true;
  for (const auto& element : range) {
    if (!first) out += separator;
    out += std::string_view(std::invoke(name, element));
    first = false;
  }
  return out;
}

}  // namespace qlora
