// What a file on disk is (device, inode, size, modification time), to tell a file changed in
// place from one replaced or removed. A process that serves a file through a memory map (model
// weights) must not go on serving it once it changed in place: the mapping shows the new bytes
// page by page (or SIGBUS past a truncation), so the weights would change under it silently. A
// file replaced by a new one (rename) or removed leaves the mapping intact.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace ite {

struct FileIdentity {
  std::string path;
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

// The identity of `path` now; NotFound when it is gone.
StatusOr<FileIdentity> FileIdentityOf(const std::string& path);

enum class FileChange {
  kNone,
  kModifiedInPlace,  // same inode, another size or modification time
  kReplaced,         // the path names another file now
  kRemoved,          // the path names nothing
};
const char* FileChangeName(FileChange change);

// How the file `then` describes has changed since.
FileChange FileChangeSince(const FileIdentity& then);

// The files a model path is read from: the file itself, or a folder's weight and config files
// (*.safetensors, *.gguf, *.json).
std::vector<std::string> ModelFiles(const std::string& model_path);

}  // namespace ite
