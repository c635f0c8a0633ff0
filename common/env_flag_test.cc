#include "common/env_flag.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ite {
namespace {

TEST(EnvFlag, OnWhenSetToAnythingButEmptyOrZero) {
  const char* name = "ITE_ENV_FLAG_TEST";
  unsetenv(name);
  EXPECT_FALSE(EnvFlag(name));
  setenv(name, "", 1);
  EXPECT_FALSE(EnvFlag(name));
  setenv(name, "0", 1);
  EXPECT_FALSE(EnvFlag(name));
  setenv(name, "1", 1);
  EXPECT_TRUE(EnvFlag(name));
  setenv(name, "yes", 1);
  EXPECT_TRUE(EnvFlag(name));
  unsetenv(name);
}

}  // namespace
}  // namespace ite
