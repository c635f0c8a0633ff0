#include "common/gguf_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/gguf_test_writer.h"

namespace ite {
namespace {

using testing::GgufTestWriter;
using ::testing::HasSubstr;

// Parses from an exact-size heap copy, so a read past the end is a real overread (caught by
// ASan in the fuzz build) rather than a read of the caller's slack.
StatusOr<std::unique_ptr<GgufFile>> Parse(const std::string& bytes) {
  static std::vector<uint8_t> buf;
  buf.assign(bytes.begin(), bytes.end());
  return ParseGgufBuffer(buf.data(), buf.size(), "test.gguf");
}

GgufTestWriter SampleWriter() {
  GgufTestWriter w;
  w.AddString("general.architecture", "llama");
  w.AddU32("llama.block_count", 2);
  w.AddI32("neg", -7);
  w.AddU64("big", 1ull << 40);
  w.AddF32("llama.rope.freq_base", 10000.5f);
  w.AddBool("flag", true);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.AddI32Array("ints", {1, -2, 3});
  w.AddF32Array("floats", {0.5f, -1.25f});
  // "w" comes last and fills whole alignment units, so the file ends exactly at its last byte
  // and every shorter prefix is a truncated file.
  w.AddTensor("v", static_cast<uint32_t>(GgmlType::F32), {3}, GgufTestWriter::F32Bytes({9, 9, 9}));
  std::string q8(34, '\0');  // one Q8_0 block
  w.AddTensor("q", static_cast<uint32_t>(GgmlType::Q8_0), {32}, q8);
  w.AddTensor("w", static_cast<uint32_t>(GgmlType::F32), {4, 2},
              GgufTestWriter::F32Bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  return w;
}

TEST(GgufReaderTest, ReadsMetadataAndTensors) {
  std::string bytes = SampleWriter().Build();
  auto f = Parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.block_count"), 2);
  EXPECT_EQ(*g.GetInt("neg"), -7);
  EXPECT_EQ(*g.GetInt("big"), int64_t{1} << 40);
  EXPECT_DOUBLE_EQ(*g.GetFloat("llama.rope.freq_base"), 10000.5);
  EXPECT_DOUBLE_EQ(*g.GetFloat("llama.block_count"), 2.0);  // ints are accepted as floats
  EXPECT_TRUE(*g.GetBool("flag"));
  EXPECT_EQ(*g.GetStringArray("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(*g.GetIntArray("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*g.GetFloatArray("floats"), (std::vector<double>{0.5, -1.25}));
  EXPECT_EQ(*g.GetFloatArray("ints"), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(g.Find("absent"), nullptr);

  ASSERT_EQ(g.tensors().size(), 3u);
  const GgufTensorInfo* w = g.FindTensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->type, GgmlType::F32);
  EXPECT_EQ(w->dims, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(w->nbytes, 32u);
  float v[8];
  std::memcpy(v, w->data, sizeof(v));
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[7], 8.0f);
  const GgufTensorInfo* q = g.FindTensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->nbytes, 34u);
  EXPECT_EQ(q->data - g.FindTensor("v")->data, 32);
  EXPECT_EQ(w->data - q->data, 64);
  EXPECT_EQ(g.FindTensor("nope"), nullptr);
}

TEST(GgufReaderTest, AccessorErrorsNameTheKey) {
  std::string bytes = SampleWriter().Build();
  auto f = Parse(bytes);
  ASSERT_TRUE(f.ok());
  auto missing = (*f)->GetInt("llama.context_length");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("llama.context_length"));
  auto wrong = (*f)->GetString("llama.block_count");
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("llama.block_count"));
  EXPECT_FALSE((*f)->GetIntArray("tokenizer.ggml.tokens").ok());
  EXPECT_FALSE((*f)->GetBool("neg").ok());
  EXPECT_FALSE((*f)->GetStringArray("flag").ok());
}

TEST(GgufReaderTest, CustomAlignmentAndVersion2) {
  GgufTestWriter w = SampleWriter();
  w.SetVersion(2);
  w.SetAlignment(64);
  w.AddU32("general.alignment", 64);
  std::string bytes = w.Build();
  auto f = Parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->FindTensor("q")->data - (*f)->FindTensor("v")->data, 64);
  EXPECT_EQ((*f)->FindTensor("w")->data - (*f)->FindTensor("q")->data, 64);
}

TEST(GgufReaderTest, RejectsBadMagicAndVersion) {
  std::string bytes = SampleWriter().Build();
  std::string bad = bytes;
  bad[0] = 'X';
  EXPECT_THAT(Parse(bad).status().message(), HasSubstr("not a GGUF file"));
  for (uint32_t version : {1u, 4u, 0x03000000u}) {
    GgufTestWriter w = SampleWriter();
    w.SetVersion(version);
    auto f = Parse(w.Build());
    EXPECT_EQ(f.status().code(), StatusCode::kUnimplemented) << version;
    EXPECT_THAT(f.status().message(), HasSubstr("version"));
  }
}

TEST(GgufReaderTest, TruncationAtEveryOffsetIsAnError) {
  std::string bytes = SampleWriter().Build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = Parse(bytes.substr(0, n));
    EXPECT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    if (!f.ok()) {
      EXPECT_THAT(f.status().message(), HasSubstr("test.gguf"));
    }
  }
  EXPECT_TRUE(Parse(bytes).ok());
}

// Overwrites 8 bytes at `pos` with `value`.
std::string Patch64(std::string bytes, size_t pos, uint64_t value) {
  std::memcpy(bytes.data() + pos, &value, 8);
  return bytes;
}

TEST(GgufReaderTest, RejectsHugeCounts) {
  std::string bytes = SampleWriter().Build();
  // Header: magic(4) version(4) tensor_count(8) kv_count(8), then key 0's length.
  for (uint64_t huge : {uint64_t{1} << 60, ~uint64_t{0}, uint64_t{bytes.size()}}) {
    EXPECT_EQ(Parse(Patch64(bytes, 8, huge)).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(Parse(Patch64(bytes, 16, huge)).status().code(), StatusCode::kDataLoss);
    auto key_len = Parse(Patch64(bytes, 24, huge));
    EXPECT_EQ(key_len.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(key_len.status().message(), HasSubstr("key #0"));
  }
  GgufTestWriter w;
  w.AddRaw(
      "arr", GgufTestWriter::kArray,
      GgufTestWriter::Pod(uint32_t{GgufTestWriter::kU32}) + GgufTestWriter::Pod(uint64_t{1} << 61));
  auto f = Parse(w.Build());
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(f.status().message(), HasSubstr("'arr'"));
  GgufTestWriter s;
  s.AddRaw("str", GgufTestWriter::kString, GgufTestWriter::Pod(uint64_t{1} << 62) + "abc");
  EXPECT_THAT(Parse(s.Build()).status().message(), HasSubstr("str"));
}

TEST(GgufReaderTest, RejectsBadValues) {
  auto expect_error = [](GgufTestWriter w, const char* needle) {
    auto f = Parse(w.Build());
    ASSERT_FALSE(f.ok()) << needle;
    EXPECT_THAT(f.status().message(), HasSubstr(needle));
  };
  GgufTestWriter unknown;
  unknown.AddRaw("k1", 99, "");
  expect_error(unknown, "k1");
  GgufTestWriter nested;
  nested.AddRaw(
      "k2", GgufTestWriter::kArray,
      GgufTestWriter::Pod(uint32_t{GgufTestWriter::kArray}) + GgufTestWriter::Pod(uint64_t{0}));
  expect_error(nested, "k2");
  GgufTestWriter bad_elem;
  bad_elem.AddRaw("k3", GgufTestWriter::kArray,
                  GgufTestWriter::Pod(uint32_t{77}) + GgufTestWriter::Pod(uint64_t{0}));
  expect_error(bad_elem, "k3");
  GgufTestWriter bad_bool;
  bad_bool.AddRaw("k4", GgufTestWriter::kBool, std::string(1, '\x05'));
  expect_error(bad_bool, "k4");
  GgufTestWriter big_u64;
  big_u64.AddU64("k5", ~uint64_t{0});
  expect_error(big_u64, "k5");
  GgufTestWriter dup;
  dup.AddU32("k6", 1);
  dup.AddU32("k6", 2);
  expect_error(dup, "k6");
  for (uint32_t align : {0u, 3u, 48u}) {
    GgufTestWriter a;
    a.AddU32("general.alignment", align);
    expect_error(a, "general.alignment");
  }
  GgufTestWriter str_align;
  str_align.AddString("general.alignment", "32");
  expect_error(str_align, "general.alignment");
}

TEST(GgufReaderTest, RejectsBadTensors) {
  const uint32_t f32 = static_cast<uint32_t>(GgmlType::F32);
  const uint32_t q4_0 = static_cast<uint32_t>(GgmlType::Q4_0);
  auto expect_error = [](const GgufTestWriter& w, const char* needle, StatusCode code) {
    auto f = Parse(w.Build());
    ASSERT_FALSE(f.ok()) << needle;
    EXPECT_EQ(f.status().code(), code) << f.status().ToString();
    EXPECT_THAT(f.status().message(), HasSubstr(needle));
  };
  const std::string four = GgufTestWriter::F32Bytes({1, 2, 3, 4});
  {
    GgufTestWriter w;
    w.AddTensor("unknown_type", 99, {4}, four);
    expect_error(w, "unknown_type", StatusCode::kUnimplemented);
  }
  {
    GgufTestWriter w;
    w.AddTensor("far", f32, {4}, four, /*offset_override=*/1 << 20);
    expect_error(w, "far", StatusCode::kDataLoss);
  }
  {
    GgufTestWriter w;
    w.AddTensor("wrap", f32, {4}, four, /*offset_override=*/-64 & 0x7fffffffffffffc0);
    expect_error(w, "wrap", StatusCode::kDataLoss);
  }
  {
    GgufTestWriter w;
    w.AddTensor("unaligned", f32, {4}, four, /*offset_override=*/4);
    expect_error(w, "unaligned", StatusCode::kInvalidArgument);
  }
  {
    GgufTestWriter w;  // claims more elements than the bytes present
    w.AddTensor("long", f32, {400}, four);
    expect_error(w, "long", StatusCode::kDataLoss);
  }
  {
    GgufTestWriter w;
    w.AddTensor("zero_dim", f32, {4, 0}, four);
    expect_error(w, "zero_dim", StatusCode::kInvalidArgument);
  }
  {
    GgufTestWriter w;
    w.AddTensor("five_dims", f32, {1, 1, 1, 1, 4}, four);
    expect_error(w, "five_dims", StatusCode::kInvalidArgument);
  }
  {
    GgufTestWriter w;
    w.AddTensor("overflow", f32, {1ull << 32, 1ull << 32}, four);
    expect_error(w, "overflow", StatusCode::kInvalidArgument);
  }
  {
    GgufTestWriter w;  // Q4_0 rows must hold whole 32-element blocks
    w.AddTensor("partial_block", q4_0, {16}, std::string(18, '\0'));
    expect_error(w, "partial_block", StatusCode::kInvalidArgument);
  }
  {
    GgufTestWriter w;
    w.AddTensor("twice", f32, {4}, four);
    w.AddTensor("twice", f32, {4}, four);
    expect_error(w, "twice", StatusCode::kInvalidArgument);
  }
}

TEST(GgufReaderTest, OpenReadsAFileAndNamesMissingOnes) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ite_gguf_reader_test_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  GgufTestWriter::WriteFile(path, SampleWriter().Build());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->path(), path);
  EXPECT_NE((*f)->mapping(), nullptr);
  EXPECT_EQ(*(*f)->GetInt("llama.block_count"), 2);
  std::filesystem::remove(path);
  auto missing = GgufFile::Open(path);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(path));
}

}  // namespace
}  // namespace ite
