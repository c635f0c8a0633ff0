#include "common/model_fingerprint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/gguf_reader.h"

namespace ite {
namespace {

// Changes whenever what is hashed changes, so two schemes never produce the same value.
constexpr std::string_view kScheme = "ite-model-fingerprint v1\n";
// The safetensors format caps its header at 100 MB; a larger length is a broken file.
constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    ITE_CHECK(ctx_ != nullptr && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1);
  }
  void Add(const void* data, size_t n) { ITE_CHECK(EVP_DigestUpdate(ctx_.get(), data, n) == 1); }
  void Add(std::string_view s) {
    AddU64(s.size());  // length first: "ab"+"c" and "a"+"bc" hash apart
    Add(s.data(), s.size());
  }
  void AddU64(uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(v >> (8 * i));
    Add(le, sizeof(le));
  }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ITE_CHECK(EVP_DigestFinal_ex(ctx_.get(), digest, &n) == 1);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
      out.push_back(kHex[digest[i] >> 4]);
      out.push_back(kHex[digest[i] & 15]);
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// A file read at offsets. pread reads only what is asked (a mapping would fault in read-ahead
// around each window), and a file truncated under us is a short read, not a SIGBUS.
class File {
 public:
  static StatusOr<File> Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT) return NotFound("{}: cannot open: {}", path, std::strerror(err));
      return FailedPrecondition("{}: cannot open: {}", path, std::strerror(err));
    }
    File f(path, fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return InvalidArgument("{}: not a regular file", path);
    }
    f.size_ = static_cast<uint64_t>(st.st_size);
    return f;
  }
  File(File&& o) noexcept
      : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), size_(o.size_) {}
  File& operator=(File&&) = delete;
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t size() const { return size_; }

  Status Read(uint64_t offset, uint64_t n, std::string* out) const {
    if (offset > size_ || n > size_ - offset) {
      return InvalidArgument("{}: {} bytes at offset {} lie past its end ({} bytes)", path_, n,
                             offset, size_);
    }
    out->resize(n);
    uint64_t done = 0;
    while (done < n) {
      const ssize_t got = ::pread(fd_, out->data() + done, n - done, offset + done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        return DataLoss("{}: read at offset {} failed: {}", path_, offset + done,
                        got == 0 ? "unexpected end of file" : std::strerror(errno));
      }
      done += static_cast<uint64_t>(got);
    }
    return Status::Ok();
  }

  // Streams [offset, offset + n) into `hash`.
  Status HashRange(uint64_t offset, uint64_t n, Sha256* hash) const {
    constexpr uint64_t kChunk = uint64_t{1} << 20;
    std::string buf;
    for (uint64_t done = 0; done < n; done += std::min(kChunk, n - done)) {
      ITE_RETURN_IF_ERROR(Read(offset + done, std::min(kChunk, n - done), &buf));
      hash->Add(buf.data(), buf.size());
    }
    return Status::Ok();
  }

  // The windows of one tensor's data, [offset, offset + n).
  Status HashSamples(uint64_t offset, uint64_t n, Sha256* hash) const {
    constexpr uint64_t w = kFingerprintWindowBytes;
    hash->AddU64(n);
    if (n <= 4 * w) return HashRange(offset, n, hash);
    for (uint64_t at : {uint64_t{0}, (n - w) / 3, 2 * ((n - w) / 3), n - w}) {
      ITE_RETURN_IF_ERROR(HashRange(offset + at, w, hash));
    }
    return Status::Ok();
  }

 private:
  File(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// GGUF: the header (metadata and tensor directory) whole, then every tensor's windows in
// directory order. The reader validates the header and that every tensor lies in the file.
Status HashGguf(const std::string& path, Sha256* hash) {
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  ITE_ASSIGN_OR_RETURN(File file, File::Open(path));
  const uint8_t* base = gguf->mapping()->data();
  uint64_t data_start = file.size();
  for (const GgufTensorInfo& t : gguf->tensors()) {
    data_start = std::min<uint64_t>(data_start, static_cast<uint64_t>(t.data - base));
  }
  hash->Add("gguf");
  hash->AddU64(file.size());
  ITE_RETURN_IF_ERROR(file.HashRange(0, data_start, hash));
  hash->AddU64(gguf->tensors().size());
  for (const GgufTensorInfo& t : gguf->tensors()) {
    ITE_RETURN_IF_ERROR(file.HashSamples(static_cast<uint64_t>(t.data - base), t.nbytes, hash));
  }
  return Status::Ok();
}

// safetensors: the 8-byte header length and the JSON header whole, then every tensor's windows
// in name order (the header's own order is not kept by every writer).
Status HashSafetensors(const File& file, const std::string& path, Sha256* hash) {
  std::string bytes;
  ITE_RETURN_IF_ERROR(file.Read(0, 8, &bytes));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(bytes[i]);
  if (header_len > kMaxSafetensorsHeader || header_len > file.size() - 8) {
    return InvalidArgument("{}: safetensors header length {} does not fit the file ({} bytes)",
                           path, header_len, file.size());
  }
  std::string header;
  ITE_RETURN_IF_ERROR(file.Read(8, header_len, &header));
  const nlohmann::json j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object())
    return InvalidArgument("{}: the safetensors header is not a JSON object", path);
  hash->Add("safetensors");
  hash->AddU64(file.size());
  hash->Add(header);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file.size() - data_start;
  for (const auto& [name, entry] : j.items()) {  // nlohmann keeps object keys sorted
    if (name == "__metadata__") continue;
    const nlohmann::json* offsets =
        entry.is_object() && entry.contains("data_offsets") ? &entry["data_offsets"] : nullptr;
    if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return InvalidArgument("{}: tensor '{}' has no data_offsets [begin, end]", path, name);
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return InvalidArgument("{}: tensor '{}' data_offsets [{}, {}] lie outside its {} data bytes",
                             path, name, begin, end, data_size);
    }
    hash->Add(name);
    ITE_RETURN_IF_ERROR(file.HashSamples(data_start + begin, end - begin, hash));
  }
  return Status::Ok();
}

// A folder: its weight shards and the side files the loaders and the scheduler read, in name
// order. Subfolders are not read (no loader looks there).
Status HashFolder(const std::string& path, Sha256* hash) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> files;  // (name, extension)
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    const std::string ext = e.path().extension().string();
    const bool wanted =
        ext == ".safetensors" || ext == ".json" || ext == ".jinja" || ext == ".model";
    std::error_code type_ec;
    if (wanted && e.is_regular_file(type_ec)) files.emplace_back(e.path().filename(), ext);
  }
  if (ec) return NotFound("{}: cannot list the folder: {}", path, ec.message());
  std::sort(files.begin(), files.end());
  const bool has_weights = std::any_of(files.begin(), files.end(),
                                       [](const auto& f) { return f.second == ".safetensors"; });
  if (!has_weights) return NotFound("{}: no *.safetensors weights to fingerprint", path);
  hash->Add("folder");
  hash->AddU64(files.size());
  for (const auto& [name, ext] : files) {
    const std::string file_path = (fs::path(path) / name).string();
    ITE_ASSIGN_OR_RETURN(File file, File::Open(file_path));
    hash->Add(name);
    if (ext == ".safetensors") {
      ITE_RETURN_IF_ERROR(HashSafetensors(file, file_path, hash));
    } else {
      hash->AddU64(file.size());
      ITE_RETURN_IF_ERROR(file.HashRange(0, file.size(), hash));
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> ModelFingerprint(const std::string& path) {
  Sha256 hash;
  hash.Add(kScheme.data(), kScheme.size());
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    ITE_RETURN_IF_ERROR(HashFolder(path, &hash));
  } else {
    ITE_RETURN_IF_ERROR(HashGguf(path, &hash));
  }
  return hash.Hex();
}

}  // namespace ite
