#include "common/env_flag.h"

#include <cstdlib>

namespace ite {

bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

}  // namespace ite
