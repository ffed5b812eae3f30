// Parquet data sets (data/parquet.hpp): the rows of the Parquet files pyarrow wrote (tests/golden/parquet_files.py)
// are the records pyarrow reads back from them (the .jsonl beside each), and they render through the named layouts
// like the same rows in JSON Lines. Without Apache Arrow in the build, load_records() refuses .parquet and says how
// to get it.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <qlora/data/layouts.hpp>
#include <qlora/data/records.hpp>
#if QLORA_HAVE_PARQUET
#include <qlora/data/parquet.hpp>
#endif

using namespace qlora;

namespace {
std::string parquet_file(const std::string& name) { return std::string(QLORA_TEST_DATA_DIR) + "/parquet/" + name; }
[[maybe_unused]] std::string marked_text(const std::vector<ChatSegment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}
}  // namespace

TEST_SUITE("data") {
#if QLORA_HAVE_PARQUET
  TEST_CASE("Parquet rows are the records pyarrow reads from them: text, numbers, nulls, lists, structs") {
    install_parquet_reader();
    for (const char* name : {"alpaca", "sharegpt", "messages", "types"}) {
      INFO(name);
      const auto records = load_records(parquet_file(std::string(name) + ".parquet"));
      const auto expected = load_records(parquet_file(std::string(name) + ".jsonl"));
      REQUIRE(records.size() == expected.size());
      for (std::size_t i = 0; i < records.size(); ++i) {
        INFO("row " << i + 1);
        CHECK(records[i].fields == expected[i].fields);
        CHECK(records[i].where == parquet_file(std::string(name) + ".parquet: row " + std::to_string(i + 1)));
      }
    }
  }

  TEST_CASE("Parquet shards named by a wildcard are read in name order as one data set") {
    install_parquet_reader();
    const auto records = load_records(parquet_file("[as]*.parquet"));  // alpaca (4 rows), sharegpt (2)
    REQUIRE(records.size() == 6);
    CHECK(records[0].where == parquet_file("alpaca.parquet: row 1"));
    CHECK(records[5].where == parquet_file("sharegpt.parquet: row 2"));
  }

  TEST_CASE("Parquet data sets render through the layouts like their JSON Lines twins") {
    install_parquet_reader();
    for (const auto& [name, layout] : {std::pair{"alpaca", "alpaca"}, {"sharegpt", "sharegpt"}, {"messages", "chat"}}) {
      const RecordRenderer renderer(dataset_layout(layout));
      const auto parquet = load_records(parquet_file(std::string(name) + ".parquet"));
      const auto jsonl = load_records(parquet_file(std::string(name) + ".jsonl"));
      for (std::size_t i = 0; i < parquet.size(); ++i) {
        const auto a = renderer.render(parquet[i], DatasetOptions{});
        const auto b = renderer.render(jsonl[i], DatasetOptions{});
        REQUIRE(a.size() == b.size());
        for (std::size_t s = 0; s < a.size(); ++s) {
          CHECK(a[s].text == b[s].text);
          CHECK(a[s].learned == b[s].learned);
        }
      }
    }
  }

  TEST_CASE("a bytes column loads as bytes and is refused only where a template uses it as text") {
    install_parquet_reader();
    const auto records = load_records(parquet_file("binary.parquet"));
    REQUIRE(records.size() == 1);
    CHECK(records[0].fields["text"] == "ok");
    REQUIRE(records[0].fields["blob"].is_binary());
    const std::vector<std::uint8_t> blob_bytes = records[0].fields["blob"].get_binary();
    CHECK(blob_bytes == std::vector<std::uint8_t>{0x00, 0xFF});
    LayoutOptions text, blob;
    blob.text_field = "blob";
    CHECK(marked_text(RecordRenderer(dataset_layout("text", text)).render(records[0], DatasetOptions{})) == "<bos>ok<eos>");
    CHECK_THROWS_WITH_AS(RecordRenderer(dataset_layout("text", blob)).render(records[0], DatasetOptions{}),
                         doctest::Contains("binary.parquet: row 1: field 'blob' (for slot {text}) is binary"), Error);
  }

  TEST_CASE("damaged and empty Parquet files are refused with the file and Arrow's reason") {
    install_parquet_reader();
    CHECK_THROWS_WITH_AS(load_records(parquet_file("empty.parquet")), doctest::Contains("empty.parquet: the file has no rows"),
                         Error);
    const auto dir = std::filesystem::temp_directory_path() / "qlora-parquet-test";
    std::filesystem::create_directories(dir);
    std::ifstream in(parquet_file("alpaca.parquet"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto truncated = (dir / "truncated.parquet").string();
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CHECK_THROWS_WITH_AS(load_records(truncated), doctest::Contains("truncated.parquet: cannot read it as Parquet: "), Error);
    const auto jsonl = (dir / "text.parquet").string();
    std::ofstream(jsonl) << "{\"text\": \"not parquet\"}\n";
    CHECK_THROWS_WITH_AS(load_records(jsonl), doctest::Contains("text.parquet: cannot read it as Parquet: "), Error);
    CHECK_THROWS_WITH_AS(load_records((dir / "missing.parquet").string()),
                         doctest::Contains("missing.parquet: cannot open the file"), Error);
    std::filesystem::remove_all(dir);
  }
#else
  TEST_CASE("without Apache Arrow, a .parquet data set is refused with how to read it") {
    MESSAGE("built without Apache Arrow (pip install pyarrow, then configure again): Parquet reading not tested");
    CHECK_THROWS_WITH_AS(load_records(parquet_file("alpaca.parquet")),
                         doctest::Contains("alpaca.parquet: this program was built without Parquet support"), Error);
    CHECK_THROWS_WITH_AS(load_records(parquet_file("alpaca.parquet")), doctest::Contains("pip install pyarrow"), Error);
  }
#endif
}
