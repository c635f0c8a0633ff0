#include "common/ready_file.h"

#include <cstdio>
#include <fstream>

namespace ite {

Status WriteReadyFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) return Internal("cannot write ready file {}", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Internal("cannot rename {} to {}", tmp, path);
  }
  return Status::Ok();
}

}  // namespace ite
