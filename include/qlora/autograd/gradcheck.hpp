// gradcheck: analytic gradients against central finite differences, in fp64 on the CPU path.
//
// For out = fn(inputs...) of any shape it checks the directional derivative along a fixed random weighting w of the
// outputs: L(x) = sum(out(x) * w). The analytic side is one backward() seeded with w; the numeric side perturbs each
// element of each input that requires a gradient by ±eps. The report names the worst element (input, flat index,
// both values), so a failing test says where the gradient is wrong.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include "tape.hpp"

namespace qlora {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-7;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  std::uint64_t seed = 1234;  // of the output weighting
};

struct GradcheckReport {
  bool passed = true;
  double max_abs_error = 0, max_rel_error = 0;
  int worst_input = -1;
  index_t worst_index = -1;
  double worst_analytic = 0, worst_numeric = 0;
  index_t elements_checked = 0;

  std::string str() const {
    std::ostringstream os;
    os << (passed ? "gradcheck passed" : "gradcheck FAILED") << ": " << elements_checked
       << " elements, max abs error " << max_abs_error << ", max rel error " << max_rel_error;
    if (worst_input >= 0)
      os << " (worst: input " << worst_input << " element " << worst_index << ", analytic " << worst_analytic
         << ", numeric " << worst_numeric << ")";
    return os.str();
  }
};

namespace detail {
template <class Out>
double weighted_sum(const Out& out, const typename Out::tensor_type& w) {
  double s = 0;
  for (index_t i = 0; i < out.numel(); ++i) s += out.value().data()[i] * w.data()[i];
  return s;
}
}  // namespace detail

template <class Fn, class... Vs>
GradcheckReport gradcheck(Fn fn, const GradcheckOptions& opt, const Vs&... inputs) {
  static_assert((std::is_same_v<typename Vs::tensor_type::value_type, double> && ...),
                "gradcheck runs in fp64: pass Variable<double, ...> inputs");
  ((inputs.device().is_cpu() ? void() : fail("gradcheck", "inputs must be CPU tensors")), ...);
  (inputs.zero_grad(), ...);

  using Out = decltype(fn(inputs...));
  typename Out::tensor_type w;
  {
    NoGrad probe;
    w = typename Out::tensor_type(fn(inputs...).shape());
  }
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> uniform(0.5, 1.5);
  for (index_t i = 0; i < w.numel(); ++i) w.data()[i] = (i % 2 ? -1.0 : 1.0) * uniform(rng);

  const Out out = fn(inputs...);
  if (!out.requires_grad()) fail("gradcheck", "the function's output does not depend on any input needing a gradient");
  backward(out, w);

  GradcheckReport report;
  int which = 0;
  auto check_input = [&](const auto& x) {
    const int input = which++;
    if (!x.requires_grad()) return;
    double* v = x.value().data();
    for (index_t i = 0; i < x.numel(); ++i) {
      const double analytic = x.has_grad() ? x.grad().data()[i] : 0.0;
      const double saved = v[i];
      double plus, minus;
      {
        NoGrad no_grad;
        v[i] = saved + opt.eps;
        plus = detail::weighted_sum(fn(inputs...), w);
        v[i] = saved - opt.eps;
        minus = detail::weighted_sum(fn(inputs...), w);
        v[i] = saved;
      }
      const double numeric = (plus - minus) / (2 * opt.eps);
      const double abs_err = std::abs(analytic - numeric);
      const double rel_err = abs_err / std::max(std::abs(numeric), 1.0);  // relative when large, absolute when small
      ++report.elements_checked;
      if (!(abs_err <= opt.atol + opt.rtol * std::abs(numeric))) report.passed = false;
      if (abs_err > report.max_abs_error || std::isnan(abs_err)) {
        report.max_abs_error = abs_err;
        report.worst_input = input;
        report.worst_index = i;
        report.worst_analytic = analytic;
        report.worst_numeric = numeric;
      }
      report.max_rel_error = std::max(report.max_rel_error, rel_err);
    }
  };
  (check_input(inputs), ...);
  return report;
}

template <class Fn, class... Vs>
  requires(is_variable_v<Vs> && ...)
GradcheckReport gradcheck(Fn fn, const Vs&... inputs) {
  return gradcheck(fn, GradcheckOptions{}, inputs...);
}

}  // namespace qlora
