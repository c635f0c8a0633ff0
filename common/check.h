// ITE_CHECK: broken invariants (programming errors) abort with a formatted message.
// Expected failures (bad input) use Status instead. ITE_DCHECK is compiled out in NDEBUG builds.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace ite::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const std::string& msg) {
  std::fprintf(stderr, "%s:%d: check failed: %s %s\n", file, line, cond, msg.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace ite::internal

#define ITE_CHECK(cond, ...)                                                               \
  do {                                                                                     \
    if (!(cond)) [[unlikely]]                                                              \
      ::ite::internal::CheckFailed(__FILE__, __LINE__, #cond, fmt::format("" __VA_ARGS__)); \
  } while (0)

#ifdef NDEBUG
#define ITE_DCHECK(cond, ...) \
  do {                        \
  } while (0)
#else
#define ITE_DCHECK(cond, ...) ITE_CHECK(cond, __VA_ARGS__)
#endif
