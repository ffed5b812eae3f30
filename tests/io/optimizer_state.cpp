// optimizer.safetensors: stopping after 3 steps, saving, and continuing with a fresh optimizer and fresh parameters
// loaded from the file gives parameters bit-identical to 6 uninterrupted steps (AdamW; AdamW8bit on both its 8-bit
// and 32-bit paths); files of another optimizer, another model or a damaged file are refused naming file and parameter.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <fstream>

#include "support/check.hpp"

#include <qlora/io/optimizer_state.hpp>

using namespace qlora;

namespace {
std::filesystem::path temp_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("qlora_optstate" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

// Two parameters: a [5000] vector (8-bit path of AdamW8bit) and a [3, 4] matrix (its 32-bit path).
struct Params {
  Variable<float, Dyn> big;
  Variable<float, Dim<3>, Dim<4>> small;

  static Params initial() {
    return {Variable<float, Dyn>::leaf(test::random_tensor<Tensor<float, Dyn>>(1, -1, 1, 5000)),
            Variable<float, Dim<3>, Dim<4>>::leaf(test::random_tensor<Tensor<float, Dim<3>, Dim<4>>>(2, -1, 1))};
  }
  // Fresh leaves holding copies of these values, as a resumed process would build from the adapter file.
  Params copy() const {
    return {Variable<float, Dyn>::leaf(big.value().clone()),
            Variable<float, Dim<3>, Dim<4>>::leaf(small.value().clone())};
  }
  ParameterList list() const { return {Parameter("layers.0.big", big), Parameter("layers.0.small", small)}; }
};

// The gradient of step t: pulls towards a moving target, so m and v change every step.
template <class V>
void give_gradient(const V& w, int t) {
  auto g = w.value().clone();
  for (index_t i = 0; i < g.numel(); ++i)
    g.data()[i] = g.data()[i] - 0.3f * std::sin(0.01f * static_cast<float>(i) + static_cast<float>(t));
  accumulate_grad(w.node(), g);
}

template <class Optimizer>
void run_steps(Optimizer& opt, const Params& p, int first, int last) {
  for (int t = first; t <= last; ++t) {
    opt.zero_grad();
    give_gradient(p.big, t);
    give_gradient(p.small, t);
    opt.step(1e-2 / t);
  }
}

template <class Optimizer, class Config>
void check_resume_is_exact(Config config, const char* file) {
  Params a = Params::initial();
  Optimizer opt_a(a.list(), config);
  run_steps(opt_a, a, 1, 6);

  Params b = Params::initial();
  Optimizer opt_b(b.list(), config);
  run_steps(opt_b, b, 1, 3);
  const auto path = temp_file(file);
  save_optimizer_state(opt_b, path);

  Params resumed = b.copy();
  Optimizer fresh(resumed.list(), config);
  load_optimizer_state(fresh, path);
  CHECK(fresh.states()[0].step == 3);
  run_steps(fresh, resumed, 4, 6);
  CHECK(resumed.big.value().to_vector() == a.big.value().to_vector());
  CHECK(resumed.small.value().to_vector() == a.small.value().to_vector());
  std::filesystem::remove(path);
}

template <class F>
void check_error(F&& f, const std::string& expected) {
  CHECK_THROWS_WITH_AS(f(), doctest::Contains(expected.c_str()), Error);
}
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("AdamW resumed from optimizer.safetensors continues bit-identically") {
    check_resume_is_exact<AdamW>(AdamWConfig{0.9, 0.999, 1e-8, 0.01}, "adamw.safetensors");
  }

  TEST_CASE("AdamW8bit resumed from optimizer.safetensors continues bit-identically on its 8-bit and 32-bit paths") {
    Params p = Params::initial();
    AdamW8bit opt(p.list());
    REQUIRE(opt.states()[0].eight_bit);
    REQUIRE_FALSE(opt.states()[1].eight_bit);
    check_resume_is_exact<AdamW8bit>(AdamW8bitConfig{}, "adamw8bit.safetensors");
  }

  TEST_CASE("optimizer.safetensors names each state after its parameter and records the optimizer") {
    Params p = Params::initial();
    AdamW8bit opt(p.list());
    run_steps(opt, p, 1, 1);
    const auto path = temp_file("names.safetensors");
    save_optimizer_state(opt, path);
    const SafetensorsFile f(path);
    CHECK(f.metadata().at("optimizer") == "adamw8bit");
    CHECK(nlohmann::json::parse(f.metadata().at("config"))["min_8bit_size"] == 4096);
    CHECK(f.info("layers.0.big.state1").dtype == SafetensorsDtype::U8);
    CHECK(f.info("layers.0.big.absmax1").shape == std::vector<index_t>{20});
    CHECK(f.info("layers.0.small.exp_avg_sq").shape == std::vector<index_t>{12});
    CHECK(f.read<std::int64_t>("layers.0.small.step").item() == 1);
    CHECK(f.tensors().size() == 5 + 3);
    std::filesystem::remove(path);
  }

  TEST_CASE("loading refuses another optimizer's file, missing, extra and resized states, and damaged files") {
    Params p = Params::initial();
    AdamW adamw(p.list());
    run_steps(adamw, p, 1, 1);
    const auto path = temp_file("adamw_for_errors.safetensors");
    save_optimizer_state(adamw, path);
    const std::string where = "[optimizer_state] " + path.string() + ": ";

    AdamW8bit eight(p.list());
    check_error([&] { load_optimizer_state(eight, path); },
                where + "holds the state of optimizer adamw, but it is being loaded into adamw8bit");

    Params other = Params::initial();
    AdamW renamed({Parameter("layers.0.big", other.big), Parameter("layers.1.small", other.small)});
    check_error([&] { load_optimizer_state(renamed, path); },
                where + "parameter 'layers.1.small': tensor layers.1.small.exp_avg is missing");

    AdamW fewer({Parameter("layers.0.big", other.big)});
    check_error([&] { load_optimizer_state(fewer, path); },
                where + "tensors that belong to no parameter of this optimizer (a different model or adapter?): "
                        "layers.0.small.exp_avg, layers.0.small.exp_avg_sq, layers.0.small.step");

    auto resized = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::zeros(4999));
    AdamW wrong_size({Parameter("layers.0.big", resized), Parameter("layers.0.small", other.small)});
    check_error([&] { load_optimizer_state(wrong_size, path); },
                where + "parameter 'layers.0.big': tensor layers.0.big.exp_avg has shape [5000], expected [4999]");
    CHECK(wrong_size.states()[1].step == 0);  // nothing was restored

    AdamW8bit eight_b(p.list());
    run_steps(eight_b, p, 1, 1);
    const auto path8 = temp_file("eight.safetensors");
    save_optimizer_state(eight_b, path8);
    AdamW8bitConfig all_32bit;
    all_32bit.min_8bit_size = 10000;
    AdamW8bit thirty_two(other.list(), all_32bit);
    check_error([&] { load_optimizer_state(thirty_two, path8); },
                "parameter 'layers.0.big': the file keeps 8-bit states, but its 5000 elements take 32-bit states here");

    {
      std::ofstream truncated(path8, std::ios::binary | std::ios::trunc);
      truncated << "abc";
    }
    check_error([&] { load_optimizer_state(eight_b, path8); }, "[safetensors] " + path8.string() + ": file is 3 bytes");
    check_error([&] { load_optimizer_state(adamw, temp_file("absent.safetensors")); },
                "[optimizer_state] " + temp_file("absent.safetensors").string() + ": no such file");
    std::filesystem::remove_all(path.parent_path());
  }
}
