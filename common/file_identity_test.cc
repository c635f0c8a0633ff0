#include "common/file_identity.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace ite {
namespace {

namespace fs = std::filesystem;

class FileIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ite-file-identity-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "model.gguf").string();
    Write(path_, "weights v1");
  }
  void TearDown() override { fs::remove_all(dir_); }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(FileIdentityTest, TellsEachKindOfChange) {
  StatusOr<FileIdentity> then = FileIdentityOf(path_);
  ASSERT_TRUE(then.ok());
  EXPECT_EQ(FileChangeSince(*then), FileChange::kNone);

  // Same inode, new bytes (the same length: only the modification time differs).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f << "v2";
  }
  EXPECT_EQ(FileChangeSince(*then), FileChange::kModifiedInPlace);

  then = FileIdentityOf(path_);
  ASSERT_TRUE(then.ok());
  const std::string fresh = (dir_ / "fresh").string();
  Write(fresh, "weights v3");
  fs::rename(fresh, path_);
  EXPECT_EQ(FileChangeSince(*then), FileChange::kReplaced);

  fs::remove(path_);
  EXPECT_EQ(FileChangeSince(*then), FileChange::kRemoved);
  EXPECT_EQ(FileIdentityOf(path_).status().code(), StatusCode::kNotFound);
}

TEST_F(FileIdentityTest, ModelFilesOfAFolderAreItsWeightsAndConfig) {
  Write((dir_ / "config.json").string(), "{}");
  Write((dir_ / "model.safetensors").string(), "x");
  Write((dir_ / "README.md").string(), "x");
  EXPECT_EQ(ModelFiles(dir_.string()),
            (std::vector<std::string>{(dir_ / "config.json").string(), path_,
                                      (dir_ / "model.safetensors").string()}));
  EXPECT_EQ(ModelFiles(path_), std::vector<std::string>{path_});
}

}  // namespace
}  // namespace ite
