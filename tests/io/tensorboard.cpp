// TensorBoard event records: CRC-32C, the Event protobuf bytes and the record framing, against test vectors computed
// from the TFRecord/protobuf definitions (shared/FORMATS.md §5); the file reads back record by record.
// TensorBoard's own reader is exercised by tests/golden/tensorboard_read.py.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <qlora/io/tensorboard.hpp>

using namespace qlora::tensorboard;

namespace {
std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 15]);
  }
  return s;
}
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("crc32c of the standard check string is 0xE3069283") {
    CHECK(crc32c("123456789", 9) == 0xE3069283u);
  }

  TEST_CASE("the file_version event and its record match the reference bytes") {
    const std::string e = event_file_version(1.5);
    CHECK(hex(e) == "09000000000000f83f1a0d627261696e2e4576656e743a32");
    const std::string r = frame_record(e);
    CHECK(hex(r.substr(0, 12)) == "1800000000000000a37f4b22");
    CHECK(hex(r.substr(r.size() - 4)) == "2a28646c");
  }

  TEST_CASE("a scalar event and its record match the reference bytes") {
    const std::string e = event_scalar(1.5, 3, "loss", 0.5f);
    CHECK(hex(e) == "09000000000000f83f10032a0d0a0b0a046c6f7373150000003f");
    const std::string r = frame_record(e);
    CHECK(hex(r.substr(0, 12)) == "1a00000000000000129bd82d");
    CHECK(hex(r.substr(r.size() - 4)) == "80655ee3");
  }

  TEST_CASE("EventWriter writes framed records that read back with valid checksums") {
    const auto dir = std::filesystem::temp_directory_path() / ("qlora_tb_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::path file;
    {
      EventWriter w(dir);
      w.add_scalar("train/loss", 2.5f, 1);
      w.add_scalar("train/loss", 2.0f, 2);
      file = w.path();
    }
    CHECK(file.filename().string().rfind("events.out.tfevents.", 0) == 0);
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    std::size_t pos = 0;
    int records = 0;
    while (pos < bytes.size()) {
      std::uint64_t len;
      std::memcpy(&len, bytes.data() + pos, 8);
      std::uint32_t len_crc, data_crc;
      std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
      REQUIRE(len_crc == masked_crc32c(bytes.data() + pos, 8));
      std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
      REQUIRE(data_crc == masked_crc32c(bytes.data() + pos + 12, len));
      pos += 16 + len;
      ++records;
    }
    CHECK(records == 3);
    std::filesystem::remove_all(dir);
  }
}
