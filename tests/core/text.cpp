// Checking UTF-8 and showing names from files safely (core/text.hpp).
#include <doctest/doctest.h>

#include <string>

#include <qlora/core/text.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("first_invalid_utf8 finds the first byte that does not start well-formed UTF-8") {
    CHECK_FALSE(first_invalid_utf8("plain ASCII, café, 日本, 😀").has_value());
    CHECK(first_invalid_utf8("ab\xFF") == 2u);
    CHECK(first_invalid_utf8("caf\xC3") == 3u);                // cut short
    CHECK(first_invalid_utf8("x\xC0\xAF") == 1u);              // overlong '/'
    CHECK(first_invalid_utf8("\xED\xA0\x80") == 0u);           // a surrogate
    CHECK(first_invalid_utf8("\xF4\x90\x80\x80") == 0u);       // past U+10FFFF
    CHECK(first_invalid_utf8("\xE2\x82\xAC ok \x80") == 7u);   // "€ ok" then a lone continuation byte
  }

  TEST_CASE("printable escapes control bytes and broken UTF-8, keeps text, and cuts long names") {
    CHECK(printable("blk.0.attn_q.weight") == "blk.0.attn_q.weight");
    CHECK(printable(std::string("blk.\x01\x7F.q\xFF", 9)) == "blk.\\x01\\x7F.q\\xFF");
    CHECK(printable("naïve €") == "naïve €");
    CHECK(printable(std::string(200, 'a')) == std::string(120, 'a') + "...");
    CHECK(printable(std::string("\0x", 2)) == "\\x00x");
  }
}
