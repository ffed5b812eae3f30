// Runs f(0) … f(n - 1) on n threads at once and returns their results in order; an exception thrown on a thread is
// rethrown here (the first, by index) after all have joined. For the tests that put work on several streams at once.
#pragma once

#include <exception>
#include <thread>
#include <type_traits>
#include <vector>

namespace qlora::test {

template <class F>
auto run_concurrently(int n, const F& f) {
  using Result = std::invoke_result_t<const F&, int>;
  std::vector<Result> results(static_cast<std::size_t>(n));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        results[static_cast<std::size_t>(i)] = f(i);
      } catch (...) {
        errors[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return results;
}

}  // namespace qlora::test
