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

TEST(EnvInt, ANumberOrTheFallback) {
  const char* name = "ITE_ENV_INT_TEST";
  unsetenv(name);
  EXPECT_EQ(EnvInt(name, 7), 7);
  setenv(name, "", 1);
  EXPECT_EQ(EnvInt(name, 7), 7);
  setenv(name, "12", 1);
  EXPECT_EQ(EnvInt(name, 7), 12);
  setenv(name, "-3", 1);
  EXPECT_EQ(EnvInt(name, 7), -3);
  setenv(name, "3x", 1);
  EXPECT_EQ(EnvInt(name, 7), 7);
  setenv(name, "x", 1);
  EXPECT_EQ(EnvInt(name, 7), 7);
  setenv(name, "99999999999999999999", 1);
  EXPECT_EQ(EnvInt(name, 7), 7);
  unsetenv(name);
}

}  // namespace
}  // namespace ite
