// The RFC 4180 CSV reader: quoting, "" escapes, commas and line breaks inside quotes, CRLF, byte-order mark, blank
// lines; and every malformed input with its exact message (file, line, column).
#include <doctest/doctest.h>

#include <qlora/data/csv.hpp>
#include <string>
#include <vector>

using namespace qlora;

using Row = std::vector<std::string>;

TEST_SUITE("data") {
  TEST_CASE("csv: header and plain rows") {
    const CsvTable t = parse_csv("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n", "plain.csv");
    CHECK(t.header == Row{"question", "answer"});
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[0] == Row{"What is 2+2?", "4"});
    CHECK(t.rows[1] == Row{"Capital of France?", "Paris"});
    CHECK(t.row_lines == std::vector<std::size_t>{2, 3});
  }

  TEST_CASE("csv: quoted fields hold commas, doubled quotes and line breaks") {
    const CsvTable t = parse_csv(
        "q,cot,a\n"
        "\"Revenue, 2023?\",\"He said \"\"up 5%\"\"\nthen stopped\",\"\"\n"
        "x,\"multi\r\nline\",\"1,234.5\"\n",
        "quoted.csv");
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[0] == Row{"Revenue, 2023?", "He said \"up 5%\"\nthen stopped", ""});
    CHECK(t.rows[1] == Row{"x", "multi\r\nline", "1,234.5"});
    CHECK(t.row_lines == std::vector<std::size_t>{2, 4});  // the first row spans lines 2-3
  }

  TEST_CASE("csv: CRLF line ends, a byte-order mark, blank lines and a missing final newline") {
    const CsvTable t = parse_csv("\xEF\xBB\xBFid,text\r\n1,a\r\n\r\n2,\r\n\n3,c", "crlf.csv");
    CHECK(t.header == Row{"id", "text"});  // no BOM in the first name
    REQUIRE(t.rows.size() == 3);
    CHECK(t.rows[0] == Row{"1", "a"});
    CHECK(t.rows[1] == Row{"2", ""});
    CHECK(t.rows[2] == Row{"3", "c"});
    CHECK(t.row_lines == std::vector<std::size_t>{2, 4, 6});
    // A lone CR is data, not a line break (RFC 4180 breaks lines with CRLF; LF alone is accepted as well).
    CHECK(parse_csv("a\nx\ry\n", "cr.csv").rows[0] == Row{"x\ry"});
  }

  TEST_CASE("csv: malformed input names the file, line and column") {
    CHECK_THROWS_WITH_AS(parse_csv("a,b\n1,\"open\n2,3\n", "bad.csv"),
                         "[dataset] bad.csv:2:3: unterminated quoted field", Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,b,c\n1,2,3\n4,5\n", "bad.csv"),
                         "[dataset] bad.csv:3: row has 2 fields, the header has 3", Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,b\n1,2,3\n", "bad.csv"),
                         "[dataset] bad.csv:2: row has 3 fields, the header has 2", Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,b\n1,ab\"c\n", "bad.csv"),
                         "[dataset] bad.csv:2:5: quote inside an unquoted field (quote the whole field and write a "
                         "quote as \"\")",
                         Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,b\n\"x\"y,2\n", "bad.csv"),
                         "[dataset] bad.csv:2:4: unexpected character after a closing quote", Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,a\n1,2\n", "bad.csv"), "[dataset] bad.csv:1: the header names 'a' twice", Error);
    CHECK_THROWS_WITH_AS(parse_csv("a,,c\n", "bad.csv"), "[dataset] bad.csv:1: the header has an empty column name",
                         Error);
    CHECK_THROWS_WITH_AS(parse_csv("", "empty.csv"), "[dataset] empty.csv: the file is empty", Error);
    CHECK_THROWS_WITH_AS(parse_csv("\xEF\xBB\xBF\r\n\n", "empty.csv"), "[dataset] empty.csv: the file is empty", Error);
  }

  TEST_CASE("csv: a header-only file has no rows") {
    const CsvTable t = parse_csv("a,b\n", "header.csv");
    CHECK(t.header == Row{"a", "b"});
    CHECK(t.rows.empty());
  }

  TEST_CASE("csv: a file that cannot be opened is an error naming it") {
    CHECK_THROWS_WITH_AS(read_csv("/nonexistent/x.csv"), "[dataset] /nonexistent/x.csv: cannot open the file", Error);
  }
}
