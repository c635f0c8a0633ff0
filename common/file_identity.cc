#include "common/file_identity.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace ite {

StatusOr<FileIdentity> FileIdentityOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return NotFound("{}: no such file", path);
    return Internal("cannot stat {}: {}", path, std::strerror(err));
  }
  FileIdentity id;
  id.path = path;
  id.device = static_cast<uint64_t>(st.st_dev);
  id.inode = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<int64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

const char* FileChangeName(FileChange change) {
  switch (change) {
    case FileChange::kNone:
      return "unchanged";
    case FileChange::kModifiedInPlace:
      return "modified in place";
    case FileChange::kReplaced:
      return "replaced";
    case FileChange::kRemoved:
      return "removed";
  }
  return "unknown";
}

FileChange FileChangeSince(const FileIdentity& then) {
  StatusOr<FileIdentity> now = FileIdentityOf(then.path);
  if (!now.ok()) return FileChange::kRemoved;
  if (now->device != then.device || now->inode != then.inode) return FileChange::kReplaced;
  if (now->size != then.size || now->mtime_ns != then.mtime_ns) {
    return FileChange::kModifiedInPlace;
  }
  return FileChange::kNone;
}

std::vector<std::string> ModelFiles(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model_path, ec)) return {model_path};
  std::vector<std::string> files;
  for (const fs::directory_entry& e : fs::directory_iterator(model_path, ec)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file(ec) && (ext == ".safetensors" || ext == ".gguf" || ext == ".json")) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace ite
