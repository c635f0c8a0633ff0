// Where a test finds the checked-in files (tests/data, and ../shared through the source tree),
// and how it reads one whole.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace ite::testing {

// $ITE_SOURCE_DIR when set (ctest sets it; a test binary carried to another machine is pointed
// at its copy of the tree); otherwise the source tree the target was built from where its CMake
// names one (ITE_TEST_SOURCE_DIR), else the working directory.
inline std::string SourceDir() {
  if (const char* d = std::getenv("ITE_SOURCE_DIR")) return d;
#ifdef ITE_TEST_SOURCE_DIR
  return ITE_TEST_SOURCE_DIR;
#else
  return ".";
#endif
}

// The file's bytes; a file that cannot be opened fails the test (and reads as empty).
inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace ite::testing
