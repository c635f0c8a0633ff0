// ModelFingerprint on GGUF files built here and on copies of tests/data/tiny-llama, each changed
// in one way: the same bytes give the same fingerprint wherever they lie, a byte changed at a
// sampled place of a tensor, a shape, a dtype, a name, a metadata value or a config file give
// another. A byte between the windows is (by design) not seen, and that is pinned down too.
#include "common/model_fingerprint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/gguf_reader.h"
#include "common/gguf_test_writer.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using testing::GgufTestWriter;

constexpr uint32_t kF32 = 0;
constexpr uint32_t kBF16 = 30;
constexpr size_t kWindow = kFingerprintWindowBytes;

class ModelFingerprintTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Per process: ctest runs the cases of this binary concurrently.
    dir_ = fs::temp_directory_path() /
           ("ite_fingerprint_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Fingerprint(const fs::path& p) {
    StatusOr<std::string> fp = ModelFingerprint(p.string());
    EXPECT_TRUE(fp.ok()) << fp.status().ToString();
    if (!fp.ok()) return "";
    EXPECT_EQ(fp->size(), 64u);
    return *fp;
  }

  fs::path dir_;
};

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const fs::path& p, const std::string& bytes) {
  GgufTestWriter::WriteFile(p.string(), bytes);
}

// 32 KiB of distinct floats for "big" (much more than four windows), 64 bytes for "small".
struct GgufSpec {
  std::vector<uint64_t> big_dims = {8192};
  uint32_t big_type = kF32;
  std::string big_name = "big";
  uint32_t context = 2048;
};

std::string BigBytes() {
  std::vector<float> v(8192);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.001f * static_cast<float>(i) - 3.0f;
  return GgufTestWriter::F32Bytes(v);
}

std::string BuildGguf(const GgufSpec& s) {
  GgufTestWriter w;
  w.AddString("general.architecture", "llama");
  w.AddU32("llama.context_length", s.context);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  w.AddTensor(s.big_name, s.big_type, s.big_dims, BigBytes());
  w.AddTensor("small", kF32, {16}, GgufTestWriter::F32Bytes(std::vector<float>(16, 0.5f)));
  return w.Build();
}

// Where tensor `name`'s data starts in the GGUF file `path` (the reader says).
size_t GgufDataOffset(const fs::path& path, const std::string& name) {
  StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path.string());
  if (!file.ok()) return std::string::npos;
  const GgufTensorInfo* t = (*file)->FindTensor(name);
  if (t == nullptr) return std::string::npos;
  return static_cast<size_t>(t->data - (*file)->mapping()->data());
}

std::string WithByteFlipped(std::string bytes, size_t at) {
  bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
  return bytes;
}

TEST_F(ModelFingerprintTest, GgufSameBytesGiveTheSameFingerprintAnywhere) {
  const std::string bytes = BuildGguf({});
  WriteAll(dir_ / "a.gguf", bytes);
  fs::create_directories(dir_ / "elsewhere");
  WriteAll(dir_ / "elsewhere" / "renamed.gguf", bytes);
  const std::string fp = Fingerprint(dir_ / "a.gguf");
  EXPECT_EQ(Fingerprint(dir_ / "a.gguf"), fp);
  EXPECT_EQ(Fingerprint(dir_ / "elsewhere" / "renamed.gguf"), fp);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos) << fp;
  EXPECT_EQ(ShortFingerprint(fp), fp.substr(0, 16));
  EXPECT_EQ(ShortFingerprint(""), "-");
}

TEST_F(ModelFingerprintTest, GgufAByteChangedAtASampledPlaceOfATensorChangesIt) {
  const std::string bytes = BuildGguf({});
  WriteAll(dir_ / "a.gguf", bytes);
  const std::string fp = Fingerprint(dir_ / "a.gguf");
  const size_t data = GgufDataOffset(dir_ / "a.gguf", "big");
  ASSERT_NE(data, std::string::npos);
  const size_t n = BigBytes().size();
  const size_t third = (n - kWindow) / 3;
  // Each window: its first and last byte.
  for (size_t at : {size_t{0}, kWindow - 1, third, third + kWindow - 1, 2 * third,
                    2 * third + kWindow - 1, n - kWindow, n - 1}) {
    WriteAll(dir_ / "b.gguf", WithByteFlipped(bytes, data + at));
    EXPECT_NE(Fingerprint(dir_ / "b.gguf"), fp) << "a byte at " << at << " of the tensor";
  }
  // Between the windows nothing is read: the limit the header comment states.
  WriteAll(dir_ / "b.gguf", WithByteFlipped(bytes, data + kWindow + 100));
  EXPECT_EQ(Fingerprint(dir_ / "b.gguf"), fp);
}

TEST_F(ModelFingerprintTest, GgufShapeTypeNameOrMetadataChangedChangesIt) {
  WriteAll(dir_ / "base.gguf", BuildGguf({}));
  const std::string fp = Fingerprint(dir_ / "base.gguf");
  GgufSpec shape;
  shape.big_dims = {4096, 2};  // the same bytes, another shape
  GgufSpec type;
  type.big_type = kBF16;  // the same bytes as 16384 bf16 values
  type.big_dims = {16384};
  GgufSpec name;
  name.big_name = "bog";
  GgufSpec meta;
  meta.context = 4096;
  int i = 0;
  for (const GgufSpec& s : {shape, type, name, meta}) {
    const fs::path p = dir_ / ("changed" + std::to_string(i++) + ".gguf");
    WriteAll(p, BuildGguf(s));
    EXPECT_NE(Fingerprint(p), fp) << p;
  }
}

// tests/data/tiny-llama (config.json, generation_config.json, model.safetensors) copied here.
fs::path CopyTinyLlama(const fs::path& to) {
  fs::copy(fs::path(ITE_TEST_DATA_DIR) / "tiny-llama", to, fs::copy_options::recursive);
  return to;
}

struct SafetensorsParts {
  nlohmann::json header;
  std::string data;
};

SafetensorsParts ReadSafetensors(const fs::path& p) {
  const std::string bytes = ReadAll(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {nlohmann::json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

void WriteSafetensors(const fs::path& p, const SafetensorsParts& parts) {
  const std::string header = parts.header.dump();
  WriteAll(p, GgufTestWriter::Pod(uint64_t{header.size()}) + header + parts.data);
}

TEST_F(ModelFingerprintTest, FolderSameBytesGiveTheSameFingerprintAnywhere) {
  const std::string fp = Fingerprint(fs::path(ITE_TEST_DATA_DIR) / "tiny-llama");
  EXPECT_EQ(Fingerprint(CopyTinyLlama(dir_ / "copy")), fp);
  // Files the loaders do not read stay out.
  std::ofstream(dir_ / "copy" / "README.md") << "# notes\n";
  EXPECT_EQ(Fingerprint(dir_ / "copy"), fp);
}

TEST_F(ModelFingerprintTest, FolderAByteChangedAtTheStartOrEndOfATensorChangesIt) {
  const fs::path model = CopyTinyLlama(dir_ / "m");
  const SafetensorsParts base = ReadSafetensors(model / "model.safetensors");
  // Our serialization of the same header: the changed copies below differ from it in data only.
  WriteSafetensors(model / "model.safetensors", base);
  const std::string fp = Fingerprint(model);
  for (const char* name : {"model.layers.1.mlp.up_proj.weight", "model.norm.weight"}) {
    const auto offsets = base.header[name]["data_offsets"];
    for (uint64_t at : {offsets[0].get<uint64_t>(), offsets[1].get<uint64_t>() - 1}) {
      SafetensorsParts changed = base;
      changed.data[at] = static_cast<char>(changed.data[at] ^ 0x01);
      WriteSafetensors(model / "model.safetensors", changed);
      EXPECT_NE(Fingerprint(model), fp) << name << " byte " << at;
    }
  }
  WriteSafetensors(model / "model.safetensors", base);
  EXPECT_EQ(Fingerprint(model), fp);
  // Between the windows of the 32 KiB up_proj nothing is read (the header's stated limit).
  SafetensorsParts between = base;
  const uint64_t begin = base.header["model.layers.1.mlp.up_proj.weight"]["data_offsets"][0];
  between.data[begin + kWindow + 8] = static_cast<char>(between.data[begin + kWindow + 8] ^ 1);
  WriteSafetensors(model / "model.safetensors", between);
  EXPECT_EQ(Fingerprint(model), fp);
}

TEST_F(ModelFingerprintTest, FolderShapeDtypeOrConfigChangedChangesIt) {
  const fs::path model = CopyTinyLlama(dir_ / "m");
  const SafetensorsParts base = ReadSafetensors(model / "model.safetensors");
  WriteSafetensors(model / "model.safetensors", base);  // our serialization of the same header
  const std::string fp = Fingerprint(model);

  SafetensorsParts shape = base;
  shape.header["model.layers.0.self_attn.k_proj.weight"]["shape"] = {64, 32};  // was [32, 64]
  WriteSafetensors(model / "model.safetensors", shape);
  EXPECT_NE(Fingerprint(model), fp) << "shape";

  SafetensorsParts dtype = base;
  dtype.header["model.norm.weight"]["dtype"] = "I32";
  WriteSafetensors(model / "model.safetensors", dtype);
  EXPECT_NE(Fingerprint(model), fp) << "dtype";

  WriteSafetensors(model / "model.safetensors", base);
  ASSERT_EQ(Fingerprint(model), fp);
  nlohmann::json config = nlohmann::json::parse(ReadAll(model / "config.json"));
  config["rope_parameters"]["rope_theta"] = 500000.0;
  std::ofstream(model / "config.json", std::ios::trunc) << config.dump(2);
  EXPECT_NE(Fingerprint(model), fp) << "config.json";

  CopyTinyLlama(dir_ / "t");
  std::ofstream(dir_ / "t" / "tokenizer_config.json") << R"({"bos_token": "<s>"})";
  const std::string with_tokenizer = Fingerprint(dir_ / "t");
  EXPECT_NE(with_tokenizer, Fingerprint(fs::path(ITE_TEST_DATA_DIR) / "tiny-llama"));
  std::ofstream(dir_ / "t" / "tokenizer_config.json", std::ios::trunc) << R"({"bos_token": "<t>"})";
  EXPECT_NE(Fingerprint(dir_ / "t"), with_tokenizer) << "tokenizer_config.json";
}

TEST_F(ModelFingerprintTest, BadInputGetsAClearErrorNotACrash) {
  // A tokenizer-only folder (a scheduler's copy): NOT_FOUND, so the caller can tell it apart.
  fs::create_directories(dir_ / "tokenizer_only");
  fs::copy(fs::path(ITE_TEST_DATA_DIR) / "tiny-llama" / "config.json", dir_ / "tokenizer_only");
  StatusOr<std::string> none = ModelFingerprint((dir_ / "tokenizer_only").string());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound) << none.status().ToString();

  EXPECT_FALSE(ModelFingerprint((dir_ / "missing.gguf").string()).ok());
  WriteAll(dir_ / "garbage.gguf", "not a model at all");
  StatusOr<std::string> garbage = ModelFingerprint((dir_ / "garbage.gguf").string());
  EXPECT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("garbage.gguf"), std::string::npos)
      << garbage.status().message();

  // A truncated shard, a header length past the end, a tensor whose offsets leave the file.
  const fs::path model = CopyTinyLlama(dir_ / "m");
  const std::string bytes = ReadAll(model / "model.safetensors");
  const SafetensorsParts base = ReadSafetensors(model / "model.safetensors");
  SafetensorsParts outside = base;
  outside.header["model.norm.weight"]["data_offsets"] = {558080, 9999999};
  const std::vector<std::string> broken = {
      bytes.substr(0, 5),
      GgufTestWriter::Pod(uint64_t{1} << 40) + bytes.substr(8),
      GgufTestWriter::Pod(uint64_t{2}) + "[]",
  };
  for (const std::string& b : broken) {
    WriteAll(model / "model.safetensors", b);
    StatusOr<std::string> fp = ModelFingerprint(model.string());
    EXPECT_FALSE(fp.ok());
    EXPECT_NE(fp.status().message().find("model.safetensors"), std::string::npos)
        << fp.status().message();
  }
  WriteSafetensors(model / "model.safetensors", outside);
  StatusOr<std::string> fp = ModelFingerprint(model.string());
  EXPECT_EQ(fp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(fp.status().message().find("model.norm.weight"), std::string::npos)
      << fp.status().message();
}

}  // namespace
}  // namespace ite
