// qlora::Error: the one exception type of the library.
// Messages start with the component in brackets, then what is wrong and where, e.g.
//   "[gguf] tensor blk.3.attn_q: offset past end of file"
// The library never calls exit() or abort(); callers decide what to do with an Error.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace qlora {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws qlora::Error("[component] " + parts...).
template <class... Parts>
[[noreturn]] void fail(const char* component, Parts&&... parts) {
  throw Error(detail::concat("[", component, "] ", std::forward<Parts>(parts)...));
}

// Throws when `condition` is false.
template <class... Parts>
void require(bool condition, const char* component, Parts&&... parts) {
  if (!condition) fail(component, std::forward<Parts>(parts)...);
}

}  // namespace qlora
