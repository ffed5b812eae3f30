// The JSONL metrics log: one parseable object per line, appended, non-finite values as null.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <fstream>

#include <qlora/io/metrics.hpp>

TEST_SUITE("io") {
  TEST_CASE("metrics are appended one JSON object per line, NaN written as null") {
    const auto path = std::filesystem::temp_directory_path() / ("qlora_metrics_" + std::to_string(::getpid())) / "m.jsonl";
    std::filesystem::remove_all(path.parent_path());
    {
      qlora::MetricsLog log(path);
      log.write(1, {{"loss", 2.5}, {"learning_rate", 2e-4}});
    }
    {
      qlora::MetricsLog log(path);  // a resumed run appends
      log.write(2, {{"loss", std::nan("")}});
    }
    std::ifstream in(path);
    std::string first, second;
    std::getline(in, first);
    std::getline(in, second);
    const auto a = nlohmann::json::parse(first), b = nlohmann::json::parse(second);
    CHECK(a["step"] == 1);
    CHECK(a["loss"] == 2.5);
    CHECK(b["loss"].is_null());
    CHECK(b["nonfinite"][0] == "loss");
    std::filesystem::remove_all(path.parent_path());
  }
}
