#include "common/env_flag.h"

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace ite {

bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || v[0] == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || errno != 0 || n < INT_MIN || n > INT_MAX) return fallback;
  return static_cast<int>(n);
}

}  // namespace ite
