#include "common/api_keys.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ite {
namespace {

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path =
      (std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))).string();
  std::ofstream(path) << text;
  return path;
}

TEST(ApiKeysTest, NoKeyAllowsEveryone) {
  StatusOr<ApiKeys> keys = ApiKeys::Load({}, {});
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->empty());
  EXPECT_TRUE(keys->Allows(""));
  EXPECT_TRUE(keys->AllowsAuthorization(""));
}

TEST(ApiKeysTest, OnlyTheGivenKeysAreAllowed) {
  StatusOr<ApiKeys> keys = ApiKeys::Load({"key-one", "key-two"}, {});
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->size(), 2u);
  EXPECT_TRUE(keys->Allows("key-one"));
  EXPECT_TRUE(keys->Allows("key-two"));
  EXPECT_FALSE(keys->Allows("key-on"));
  EXPECT_FALSE(keys->Allows("key-one "));
  EXPECT_FALSE(keys->Allows("KEY-ONE"));
  EXPECT_FALSE(keys->Allows(""));
}

TEST(ApiKeysTest, AuthorizationHeaderNeedsTheBearerScheme) {
  StatusOr<ApiKeys> keys = ApiKeys::Load({"s3cret"}, {});
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->AllowsAuthorization("Bearer s3cret"));
  EXPECT_TRUE(keys->AllowsAuthorization("bearer s3cret"));
  EXPECT_TRUE(keys->AllowsAuthorization("  BEARER   s3cret  "));
  EXPECT_FALSE(keys->AllowsAuthorization("s3cret"));
  EXPECT_FALSE(keys->AllowsAuthorization("Basic s3cret"));
  EXPECT_FALSE(keys->AllowsAuthorization("Bearers3cret"));
  EXPECT_FALSE(keys->AllowsAuthorization("Bearer "));
  EXPECT_FALSE(keys->AllowsAuthorization("Bearer other"));
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("Token abc"), "");
}

TEST(ApiKeysTest, FileKeysSkipCommentsAndBlankLines) {
  std::string path = WriteFile("keys", "# team A\nfile-key-1\r\n\n  file-key-2  \n");
  StatusOr<ApiKeys> keys = ApiKeys::Load({"flag-key"}, {path});
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->size(), 3u);
  EXPECT_TRUE(keys->Allows("file-key-1"));
  EXPECT_TRUE(keys->Allows("file-key-2"));
  EXPECT_TRUE(keys->Allows("flag-key"));
  EXPECT_FALSE(keys->Allows("# team A"));
  std::filesystem::remove(path);
}

TEST(ApiKeysTest, BadKeysAreErrorsThatDoNotQuoteTheKey) {
  StatusOr<ApiKeys> spaced = ApiKeys::Load({"has space-secretpart"}, {});
  ASSERT_FALSE(spaced.ok());
  EXPECT_EQ(spaced.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(spaced.status().message().find("secretpart"), std::string::npos);
  EXPECT_FALSE(ApiKeys::Load({""}, {}).ok());
  EXPECT_FALSE(ApiKeys::Load({std::string(5000, 'k')}, {}).ok());
  EXPECT_FALSE(ApiKeys::Load({"tab\tkey"}, {}).ok());

  std::string bad = WriteFile("badkeys", "good-key\nbad\x01-hiddenpart\n");
  StatusOr<ApiKeys> from_file = ApiKeys::Load({}, {bad});
  ASSERT_FALSE(from_file.ok());
  EXPECT_NE(from_file.status().message().find("line 2"), std::string::npos)
      << from_file.status().message();
  EXPECT_EQ(from_file.status().message().find("hiddenpart"), std::string::npos);
  std::filesystem::remove(bad);
}

TEST(ApiKeysTest, MissingOrEmptyFileIsAnError) {
  EXPECT_FALSE(ApiKeys::Load({}, {"/nonexistent/keys.txt"}).ok());
  std::string empty = WriteFile("emptykeys", "# nothing here\n\n");
  StatusOr<ApiKeys> keys = ApiKeys::Load({}, {empty});
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.status().message().find("no key"), std::string::npos);
  std::filesystem::remove(empty);
}

}  // namespace
}  // namespace ite
