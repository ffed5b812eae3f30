// The data pipeline as a specification: records -> template -> tokens -> masked labels -> batches, checked token by
// token with a byte-level tokenizer that exists only here, plus every malformed input with its exact message and the
// bundled examples/data/finance_reasoning.jsonl under the default recipe.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <qlora/data/batch.hpp>
#include <qlora/data/dataset.hpp>
#include <qlora/data/tokenizer.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "support/samples.hpp"

using namespace qlora;

namespace {

// Each UTF-8 byte b is token 1000 + b; the specials have Gemma's ids. For tests only.
struct ByteTokenizerForTests {
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> ids;
    for (unsigned char c : text) ids.push_back(1000 + c);
    return ids;
  }
  std::int32_t bos_id() const { return 2; }
  std::int32_t eos_id() const { return 1; }
  std::int32_t pad_id() const { return 0; }
  std::int32_t token_id(std::string_view special) const {
    if (special == "<start_of_turn>") return 105;
    if (special == "<end_of_turn>") return 106;
    fail("test", "no special token ", special);
  }
};
static_assert(TextTokenizer<ByteTokenizerForTests>);
static_assert(TextTokenizer<Tokenizer>, "the real SentencePiece tokenizer fits the data pipeline");

constexpr std::int32_t X = ignore_index;
const ByteTokenizerForTests tok;

std::vector<std::int32_t> bytes(std::string_view s) { return tok.encode(s); }
std::vector<std::int32_t> cat(std::initializer_list<std::vector<std::int32_t>> parts) {
  std::vector<std::int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
std::vector<std::int32_t> masked(std::size_t n) { return std::vector<std::int32_t>(n, X); }

Record record(nlohmann::json fields, std::string where = "test.jsonl:1") {
  return {std::move(fields), std::move(where)};
}

const TemplatedFormat qa{{"Q: {q}\nA: ", "{a}"}, {{"q", "question"}, {"a", "answer"}}};

TokenizedDataset tokenize(const std::vector<Record>& records, const DatasetFormat& format, DatasetOptions o = {}) {
  return tokenize_records(records, format, tok, o);
}

using test::learned_sample;

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("a templated record: <bos> + prompt unlearned, response + <eos> learned, token by token") {
    const auto d = tokenize({record({{"question", "2+2?"}, {"answer", "4"}})}, qa);
    REQUIRE(d.samples.size() == 1);
    const Sample& s = d.samples[0];
    CHECK(s.input_ids == cat({{2}, bytes("Q: 2+2?\nA: "), bytes("4"), {1}}));
    CHECK(s.labels == cat({masked(1 + 11), bytes("4"), {1}}));
    CHECK(d.label_tokens == 2);
    CHECK(d.tokens == 14);
    CHECK(d.truncated == 0);
  }

  TEST_CASE("train_on_prompt learns every token; add_eos = false ends without <eos>") {
    DatasetOptions o;
    o.train_on_prompt = true;
    o.add_eos = false;
    const auto d = tokenize({record({{"question", "x"}, {"answer", 7}})}, qa, o);  // numbers are written as JSON
    CHECK(d.samples[0].input_ids == cat({{2}, bytes("Q: x\nA: 7")}));
    CHECK(d.samples[0].labels == d.samples[0].input_ids);
  }

  TEST_CASE("a chat record: loss on the model turns only, special tokens as ids") {
    const auto d = tokenize({record({{"messages",
                                      {{{"role", "system"}, {"content", "S"}},
                                       {{"role", "user"}, {"content", "Q"}},
                                       {{"role", "assistant"},
                                        {"content",
                                         [] {
                                           return nlohmann::json::array({{{"type", "text"}, {"text", " A "}}});
                                         }()}}}}})},
                            ChatFormat{});
    const Sample& s = d.samples[0];
    CHECK(s.input_ids == cat({{2, 105},
                              bytes("user\nS\n\nQ"),
                              {106},
                              bytes("\n"),
                              {105},
                              bytes("model\n"),
                              bytes("A"),
                              {106},
                              bytes("\n")}));
    CHECK(s.labels == cat({masked(2 + 9 + 1 + 1 + 1 + 6), bytes("A"), {106}, bytes("\n")}));
  }

  TEST_CASE("truncation keeps the first max_length tokens and counts the samples cut") {
    DatasetOptions o;
    o.max_length = 12;  // <bos> + "Q: ab\nA: " is 10 tokens
    const auto d =
        tokenize({record({{"question", "ab"}, {"answer", "c"}}), record({{"question", "ab"}, {"answer", "cdef"}}),
                  record({{"question", "abcdefghij"}, {"answer", "z"}})},
                 qa, o);
    CHECK(d.samples[0].input_ids.size() == 12);  // fits exactly: 10 + "c" + <eos>
    CHECK_FALSE(d.samples[0].truncated);
    CHECK(d.samples[1].truncated);
    CHECK(d.samples[1].input_ids == cat({{2}, bytes("Q: ab\nA: cd")}));
    CHECK(d.samples[1].labels == cat({masked(10), bytes("cd")}));
    CHECK(d.samples[2].truncated);
    CHECK(d.truncated == 2);
    CHECK(d.truncated_to_no_labels == 1);  // the third sample's response was cut away entirely
    CHECK(d.summary() ==
          "3 samples, 36 tokens (4 learned); 2 truncated to max_length 12 (1 of them lost every learned token)");
  }

  TEST_CASE("padding goes only to the longest sample of the batch") {
    const auto d =
        tokenize({record({{"question", "a"}, {"answer", "bc"}}), record({{"question", "abcd"}, {"answer", "e"}})}, qa);
    const Batch b = pad_batch(d.samples, tok.pad_id());
    const std::size_t n0 = d.samples[0].input_ids.size(), n1 = d.samples[1].input_ids.size();
    REQUIRE(n1 == n0 + 2);
    CHECK(b.B == 2);
    CHECK(b.T == n1);
    CHECK(b.lengths == std::vector<std::int32_t>{static_cast<std::int32_t>(n0), static_cast<std::int32_t>(n1)});
    for (std::size_t t = 0; t < b.T; ++t) {
      const bool pad = t >= n0;
      CHECK(b.tokens[b.at(0, t)] == (pad ? 0 : d.samples[0].input_ids[t]));
      CHECK(b.labels[b.at(0, t)] == (pad ? X : d.samples[0].labels[t]));
      CHECK(b.positions[b.at(0, t)] == (pad ? 0 : static_cast<std::int32_t>(t)));
      CHECK(b.segment_ids[b.at(0, t)] == (pad ? 0 : 1));
      CHECK(b.segment_ids[b.at(1, t)] == 1);
    }
    CHECK_FALSE(b.attends(0, n0, 0));  // padding attends to nothing
    CHECK(b.label_tokens() == 3 + 2);  // "bc" + <eos>, "e" + <eos>: no label on prompt or padding
  }

  TEST_CASE("packing: positions restart, segment ids separate samples, no label across a boundary") {
    const std::vector<Sample> samples{learned_sample(3, 10), learned_sample(4, 20), learned_sample(2, 30),
                                      learned_sample(7, 40)};
    const auto rows = pack_rows(samples, 8);
    CHECK(rows == std::vector<std::vector<std::size_t>>{{0, 1}, {2}, {3}});  // 3+4 fit in 8; 7+2 and 2+7 do not
    const auto batches = make_batches(samples, 2, 0, 8);
    REQUIRE(batches.size() == 2);
    const Batch& b = batches[0];
    CHECK(b.T == 7);  // the longest row of this batch
    CHECK(b.samples == std::vector<std::size_t>{0, 1, 2});
    CHECK(std::vector<std::int32_t>(b.tokens.begin(), b.tokens.begin() + 7) ==
          std::vector<std::int32_t>{10, 11, 12, 20, 21, 22, 23});
    CHECK(std::vector<std::int32_t>(b.positions.begin(), b.positions.begin() + 7) ==
          std::vector<std::int32_t>{0, 1, 2, 0, 1, 2, 3});
    CHECK(std::vector<std::int32_t>(b.segment_ids.begin(), b.segment_ids.begin() + 7) ==
          std::vector<std::int32_t>{1, 1, 1, 2, 2, 2, 2});
    CHECK(std::vector<std::int32_t>(b.labels.begin(), b.labels.begin() + 7) ==
          std::vector<std::int32_t>{X, 11, 12, X, 21, 22, 23});  // 20 is not predicted from 12
    CHECK(std::vector<std::int32_t>(b.tokens.begin() + 7, b.tokens.end()) ==
          std::vector<std::int32_t>{30, 31, 0, 0, 0, 0, 0});
    CHECK(b.lengths == std::vector<std::int32_t>{7, 2});
    // Shifted for the loss: the last token of a sample never has the next sample's first token as its target.
    const auto next = b.next_token_labels();
    CHECK(std::vector<std::int32_t>(next.begin(), next.begin() + 7) ==
          std::vector<std::int32_t>{11, 12, X, 21, 22, 23, X});
    CHECK(b.attends(0, 2, 0));
    CHECK_FALSE(b.attends(0, 3, 2));  // the second sample does not see the first
    CHECK(b.attends(0, 6, 3));
    CHECK_FALSE(b.attends(0, 3, 4));  // causal
    CHECK(b.label_tokens() == 2 + 3 + 1);
    CHECK(batches[1].B == 1);
    CHECK(batches[1].T == 7);
    CHECK_THROWS_WITH_AS(pack_rows(samples, 5),
                         "[dataset] sample 3 has 7 tokens, more than the packing length 5 (tokenize with the same "
                         "max_length)",
                         Error);
  }

  TEST_CASE("shuffling is fixed by its seed") {
    std::vector<int> a(10), b(10);
    std::iota(a.begin(), a.end(), 0);
    std::iota(b.begin(), b.end(), 0);
    shuffle(a, 42);
    shuffle(b, 42);
    CHECK(a == b);
    // std::mt19937_64 is specified by the standard, so this order holds on every platform.
    CHECK(a == std::vector<int>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6});
    shuffle(b, 43);
    CHECK(a != b);
    std::sort(b.begin(), b.end());
    CHECK(b == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  }

  TEST_CASE("train/eval split sizes by fraction or count, disjoint and complete") {
    std::vector<int> items(400);
    std::iota(items.begin(), items.end(), 0);
    const auto s = train_eval_split(items, EvalSize::of_fraction(0.1), 7);
    CHECK(s.eval.size() == 40);
    CHECK(s.train.size() == 360);
    auto all = s.train;
    all.insert(all.end(), s.eval.begin(), s.eval.end());
    std::sort(all.begin(), all.end());
    CHECK(all == items);
    CHECK(train_eval_split(items, EvalSize::of_fraction(0.1), 7).eval == s.eval);
    CHECK(train_eval_split(std::vector<int>(10), EvalSize::of_fraction(0.15), 1).eval.size() == 2);  // rounded up
    CHECK(train_eval_split(items, EvalSize::of_count(25), 1).eval.size() == 25);
    CHECK_THROWS_WITH_AS(train_eval_split(std::vector<int>(3), EvalSize::of_count(3), 1),
                         "[dataset] an eval split of 3 from 3 samples leaves no training samples", Error);
    CHECK_THROWS_WITH_AS(train_eval_split(items, EvalSize::of_fraction(1.5), 1),
                         "[dataset] eval fraction must be in (0, 1), not 1.5", Error);
  }

  TEST_CASE("select keeps the first N records, as train[:N]") {
    CHECK(select_first(std::vector<int>{1, 2, 3, 4}, 2) == std::vector<int>{1, 2});
    CHECK(select_first(std::vector<int>{1, 2}, 5) == std::vector<int>{1, 2});
    DatasetOptions o;
    o.select = 1;
    const auto d =
        tokenize({record({{"question", "a"}, {"answer", "b"}}), record({{"question", "c"}, {"answer", "d"}})}, qa, o);
    CHECK(d.samples.size() == 1);
  }

  TEST_CASE("the mapping must match the template's slots exactly") {
    const auto one = std::vector<Record>{record({{"question", "a"}, {"answer", "b"}})};
    CHECK_THROWS_WITH_AS(tokenize(one, TemplatedFormat{{"{q} {cot}", "{a}"}, {{"q", "question"}, {"a", "answer"}}}),
                         "[dataset] template slot {cot} has no field in the mapping", Error);
    CHECK_THROWS_WITH_AS(
        tokenize(one, TemplatedFormat{{"{q}", "{a}"}, {{"q", "question"}, {"a", "answer"}, {"x", "Response"}}}),
        "[dataset] the mapping gives field 'Response' to slot {x}, which the template does not use", Error);
    CHECK_THROWS_WITH_AS(tokenize(one, TemplatedFormat{{"{q", "{a}"}, {{"q", "question"}, {"a", "answer"}}}),
                         "[dataset] prompt template: '{' at offset 0 is never closed (write '{{' for a literal brace)",
                         Error);
    CHECK_THROWS_WITH_AS(tokenize(one, TemplatedFormat{{"{q}", "a}"}, {{"q", "question"}}}),
                         "[dataset] response template: '}' at offset 1 has no '{' (write '}}' for a literal brace)",
                         Error);
    CHECK_THROWS_WITH_AS(tokenize(one, TemplatedFormat{{"{}", "{a}"}, {{"a", "answer"}}}),
                         "[dataset] prompt template: empty slot '{}' at offset 0; name every slot", Error);
    // "{{" and "}}" are literal braces.
    const auto d = tokenize(one, TemplatedFormat{{"{{{q}}}", "{a}"}, {{"q", "question"}, {"a", "answer"}}});
    CHECK(d.samples[0].input_ids == cat({{2}, bytes("{a}b"), {1}}));
  }

  TEST_CASE("records missing a mapped field, or holding the wrong type, are errors naming the record") {
    CHECK_THROWS_WITH_AS(
        tokenize({record({{"question", "a"}, {"answer", "b"}}), record({{"question", "a"}}, "train.jsonl:2")}, qa),
        "[dataset] train.jsonl:2: record has no field 'answer' (for slot {a}); its fields: question (another layout? "
        "--format alpaca, chat, sharegpt, text, prompt-completion, or a custom template)",
        Error);
    CHECK_THROWS_WITH_AS(tokenize({record({{"question", nullptr}, {"answer", "b"}}, "d.csv:4")}, qa),
                         "[dataset] d.csv:4: field 'question' (for slot {q}) is null; expected text or a number",
                         Error);
    CHECK_THROWS_WITH_AS(
        tokenize({record({{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, "c.jsonl:3")}, ChatFormat{}),
        "[dataset] c.jsonl:3: the conversation has no model turn, so nothing to learn", Error);
    CHECK_THROWS_WITH_AS(
        tokenize({record({{"messages", {{{"role", "assistant"}, {"content", "hi"}}}}}, "c.jsonl:4")}, ChatFormat{}),
        "[dataset] c.jsonl:4: conversation roles must alternate user/assistant/user/assistant/... "
        "(message 1 is 'assistant')",
        Error);
    CHECK_THROWS_WITH_AS(tokenize({record({{"messages", "hi"}}, "c.jsonl:5")}, ChatFormat{}),
                         "[dataset] c.jsonl:5: field 'messages' is string; expected a list of {role, content}", Error);
    CHECK_THROWS_WITH_AS(
        tokenize({record({{"messages", {{{"role", "user"}, {"content", {{{"type", 3}}}}}}}}, "c.jsonl:7")},
                 ChatFormat{}),
        "[dataset] c.jsonl:7: message 1 has a content part that is not {type: text, text}", Error);
    CHECK_THROWS_WITH_AS(tokenize({record({{"text", "hi"}}, "c.jsonl:6")}, ChatFormat{}),
                         "[dataset] c.jsonl:6: record has no field 'messages'", Error);
  }

  TEST_CASE("invalid UTF-8 in a data file is named as such, with its line and column, in every file type") {
    const auto dir = std::filesystem::temp_directory_path() / "qlora_utf8";
    std::filesystem::create_directories(dir);
    for (const char* name : {"bad.jsonl", "bad.json", "bad.csv"}) {
      const auto path = dir / name;
      std::ofstream(path, std::ios::binary) << (std::string(name) == "bad.csv" ? "q,a\nok,1\n" : "{\"q\": \"ok\"}\n")
                                            << "{\"q\": \"caf\xE9\"}\n";
      CHECK_THROWS_WITH_AS(load_records(path.string()),
                           (std::string("[dataset] ") + path.string() + (std::string(name) == "bad.csv" ? ":3" : ":2") +
                            ": invalid UTF-8 at column 11 (byte 0xE9); save the file as UTF-8").c_str(),
                           Error);
    }
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("a wildcard in the file name reads every matching shard, in name order, as one data set") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "qlora-shards-test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "train-00001-of-00002.jsonl") << "{\"n\": 3}\n";
    std::ofstream(dir / "train-00000-of-00002.jsonl") << "{\"n\": 1}\n{\"n\": 2}\n";
    std::ofstream(dir / "test-00000-of-00001.jsonl") << "{\"n\": 9}\n";
    std::ofstream(dir / ".train-hidden.jsonl") << "{\"n\": 8}\n";
    const auto records = load_records((dir / "train-*.jsonl").string());
    REQUIRE(records.size() == 3);
    CHECK(records[0].fields["n"] == 1);
    CHECK(records[2].fields["n"] == 3);
    CHECK(records[2].where == (dir / "train-00001-of-00002.jsonl").string() + ":1");
    CHECK(data_files((dir / "t*-0000?-of-*.jsonl").string()).size() == 3);
    CHECK(data_files("plain.jsonl") == std::vector<std::string>{"plain.jsonl"});
    CHECK_THROWS_WITH_AS(load_records((dir / "valid-*.jsonl").string()),
                         ("[dataset] " + (dir / "valid-*.jsonl").string() + ": no file matches").c_str(), Error);
    CHECK_THROWS_WITH_AS(load_records((dir / "none" / "*.jsonl").string()), doctest::Contains(": no folder "), Error);
    fs::remove_all(dir);
  }

  TEST_CASE("JSON Lines and JSON arrays: bad input names the file and line") {
    const auto r = parse_jsonl("{\"a\": 1}\n\n{\"a\": 2}\r\n", "ok.jsonl");
    REQUIRE(r.size() == 2);
    CHECK(r[1].where == "ok.jsonl:3");
    CHECK(r[1].fields["a"] == 2);
    CHECK_THROWS_WITH_AS(parse_jsonl("{\"a\": 1}\n{\"a\": 1,}\n", "bad.jsonl"),
                         "[dataset] bad.jsonl:2: invalid JSON at column 9", Error);
    CHECK_THROWS_WITH_AS(parse_jsonl("{\"a\": 1}\n[1, 2]\n", "bad.jsonl"),
                         "[dataset] bad.jsonl:2: expected a JSON object, found array", Error);
    CHECK_THROWS_WITH_AS(parse_jsonl("\n  \n", "empty.jsonl"), "[dataset] empty.jsonl: the file is empty", Error);
    const auto a = parse_json_array("[{\"a\": 1},\n {\"a\": 2}]", "ok.json");
    CHECK(a[1].where == "ok.json: record 2");
    CHECK_THROWS_WITH_AS(parse_json_array("[{\"a\": 1},\n 3]", "bad.json"),
                         "[dataset] bad.json: record 2: expected a JSON object, found number", Error);
    CHECK_THROWS_WITH_AS(parse_json_array("[{\"a\": 1},\n {\"a\" 2}]", "bad.json"),
                         "[dataset] bad.json:2: invalid JSON at column 7", Error);
    CHECK_THROWS_WITH_AS(load_records("data.txt"),
                         "[dataset] data.txt: unknown file type (expected .jsonl, .json, .csv or .parquet)", Error);
    // Found by tests/fuzz/dataset.cpp: a number too large for any JSON type escaped as nlohmann's out_of_range.
    CHECK_THROWS_WITH_AS(parse_jsonl("44444444444e4444\"\"\"\"e\r\n", "big.jsonl"),
                         doctest::Contains("[dataset] big.jsonl:1: invalid JSON"), Error);
    CHECK_THROWS_WITH_AS(parse_json_array("[1e99999]", "big.json"), doctest::Contains("[dataset] big.json"), Error);
  }

  TEST_CASE("the same records from JSONL, JSON and CSV files give the same samples") {
    const auto dir = std::filesystem::temp_directory_path() / "qlora_data_test";
    std::filesystem::create_directories(dir);
    const auto write = [&](const char* name, std::string_view text) {
      std::ofstream(dir / name, std::ios::binary) << text;
      return (dir / name).string();
    };
    const auto jsonl =
        write("r.jsonl", "{\"question\": \"a, b\", \"answer\": \"c\\nd\"}\n{\"question\": \"e\", \"answer\": \"f\"}\n");
    const auto json =
        write("r.json", "[{\"question\": \"a, b\", \"answer\": \"c\\nd\"}, {\"question\": \"e\", \"answer\": \"f\"}]");
    const auto csv = write("r.csv", "question,answer\r\n\"a, b\",\"c\nd\"\r\ne,f\r\n");
    const auto from_jsonl = load_dataset(jsonl, qa, tok, {});
    for (const auto& path : {json, csv}) {
      const auto d = load_dataset(path, qa, tok, {});
      REQUIRE(d.samples.size() == 2);
      for (std::size_t i = 0; i < 2; ++i) {
        CHECK(d.samples[i].input_ids == from_jsonl.samples[i].input_ids);
        CHECK(d.samples[i].labels == from_jsonl.samples[i].labels);
      }
    }
    const std::string empty_message = "[dataset] " + (dir / "e.csv").string() + ": the file is empty";
    CHECK_THROWS_WITH_AS(load_dataset(write("e.csv", ""), qa, tok, {}), empty_message.c_str(), Error);
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("the bundled finance_reasoning.jsonl loads with the default recipe template") {
    const std::string path = std::string(QLORA_SOURCE_DIR) + "/examples/data/finance_reasoning.jsonl";
    DatasetOptions o;
    o.max_length = 2048;
    const auto d = load_dataset(path, finance_reasoning_format(), tok, o);
    CHECK(d.samples.size() == 400);
    CHECK(d.truncated == 0);
    const auto records = load_records(path);
    const FilledPromptTemplate t(finance_reasoning_format().prompt_template, finance_reasoning_format().fields);
    for (std::size_t i = 0; i < d.samples.size(); ++i) {
      const Sample& s = d.samples[i];
      // The learned tokens are exactly "<think>\n{cot}\n</think>\n{response}" then <eos>.
      std::vector<std::int32_t> learned;
      for (std::int32_t l : s.labels)
        if (l != X) learned.push_back(l);
      const auto& f = records[i].fields;
      const std::string response =
          "<think>\n" + f["Complex_CoT"].get<std::string>() + "\n</think>\n" + f["Response"].get<std::string>();
      CHECK(learned == cat({bytes(response), {1}}));
      CHECK(s.input_ids == cat({{2}, bytes(t.text(records[i])), {1}}));
    }
    o.max_length = 512;
    o.select = 100;
    const auto cut = load_dataset(path, finance_reasoning_format(), tok, o);
    CHECK(cut.samples.size() == 100);
    // Byte tokens are several times as many as SentencePiece's: every record is cut, none loses its whole answer.
    CHECK(cut.truncated == 100);
    CHECK(cut.truncated_to_no_labels == 0);
  }
}
