// dist/: the rank shares of the data, the gradient sum, the broadcast and the same-job check, with a communicator
// that stands for the other ranks (the run over real MPI processes is tools/tests/dist.sh, CTest dist.mpi).
#include <doctest/doctest.h>

#include <qlora/data/batch.hpp>
#include <qlora/dist/data_parallel.hpp>

#include "support/mirror_ranks.hpp"
#include "support/samples.hpp"

namespace {
using namespace qlora;
using test::MirrorRanks;

using test::learned_sample;
}  // namespace

TEST_SUITE("dist") {
  TEST_CASE("rank shares: 2 ranks with batch 1 see the rows of one process with batch 2, each padded to its own") {
    const std::vector<Sample> samples{learned_sample(3, 10), learned_sample(5, 20), learned_sample(2, 30), learned_sample(4, 40),
                                      learned_sample(6, 50)};
    const auto one = make_batches(samples, 2, 0);
    const auto r0 = make_batches(samples, 1, 0, std::nullopt, RankShare{0, 2});
    const auto r1 = make_batches(samples, 1, 0, std::nullopt, RankShare{1, 2});
    REQUIRE(one.size() == 3);
    REQUIRE(r0.size() == 3);
    REQUIRE(r1.size() == 3);
    for (std::size_t m = 0; m < 2; ++m) {
      CHECK(r0[m].samples == std::vector<std::size_t>{one[m].samples[0]});
      CHECK(r1[m].samples == std::vector<std::size_t>{one[m].samples[1]});
      CHECK(r0[m].label_tokens() + r1[m].label_tokens() == one[m].label_tokens());
    }
    CHECK(r0[0].T == 3);  // its own longest row, not the 5 of the global micro-batch
    CHECK(r1[0].T == 5);
    CHECK(r0[2].samples == std::vector<std::size_t>{4});  // the odd row at the end of the epoch
    CHECK(r1[2].B == 0);                                   // rank 1's share is empty
    CHECK(r1[2].label_tokens() == 0);
    // 3 ranks, batch 2: rows 0-1, 2-3, 4 of the one global micro-batch
    CHECK(make_batches(samples, 2, 0, std::nullopt, RankShare{2, 3})[0].samples == std::vector<std::size_t>{4});
    CHECK_THROWS_WITH_AS(make_batches(samples, 1, 0, std::nullopt, RankShare{2, 2}), "[dataset] rank 2 of 2 ranks", Error);
  }

  TEST_CASE("sum_gradients: buckets of any size (a parameter may span several) give the sum; no gradient = zeros") {
    for (const std::size_t bucket : {std::size_t{4}, std::size_t{8}, std::size_t{12}, std::size_t{20}, dist::default_bucket_bytes}) {
      auto a = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::zeros(3));
      auto b = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::zeros(2));
      const ParameterList params{Parameter("a", a), Parameter("b", b)};
      params[0].ensure_grad().copy_from(Tensor<float, Dyn>::from({1, 2, 3}, 3));
      CHECK_FALSE(params[1].grad().defined());
      MirrorRanks two(2);
      Tensor<float, Dyn> scratch;
      dist::sum_gradients(two, params, "gradients of step 1", scratch, bucket);
      CHECK(params[0].grad().to_vector() == std::vector<float>{2, 4, 6});
      CHECK(params[1].grad().to_vector() == std::vector<float>{0, 0});
      // 5 floats in buckets of 1, 2, 3, 5 floats and 25 MiB: 5, 3 (a0 a1; a2 b0; b1), 2 (a; b), 1 and 1 sums
      CHECK(two.names.size() == (bucket == 4 ? 5u : bucket == 8 ? 3u : bucket == 12 ? 2u : 1u));
      CHECK(two.names[0] == "gradients of step 1");
      dist::broadcast_values(two, params, "initial adapter", bucket);
      CHECK(params[1].value().to_vector() == std::vector<float>{7, 7});
    }
  }

  TEST_CASE("check_same_job names the rank and the first differing line") {
    MirrorRanks same(3, {"a\nb\n", "a\nb\n", "a\nb\n"});
    CHECK_NOTHROW(dist::check_same_job(same, "a\nb\n", "configuration"));
    MirrorRanks other(3, {"lr 1\nsteps 5", "lr 1\nsteps 5", "lr 1\nsteps 6"});
    CHECK_THROWS_WITH_AS(dist::check_same_job(other, "", "configuration"),
                         "[dist] rank 2 runs another job than rank 0: its configuration differs at line 2: 'steps 6' "
                         "(rank 0: 'steps 5'); every rank must be started with the same flags, data and model",
                         Error);
    MirrorRanks shorter(2, {"x\ny", "x"});
    CHECK_THROWS_WITH_AS(dist::check_same_job(shorter, "", "data"),
                         doctest::Contains("its data differs at line 2: '(end)' (rank 0: 'y')"), Error);
  }
}
