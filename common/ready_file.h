// A process tells its parent which port it bound by writing it to a "ready file" once it
// serves: written to PATH.tmp and renamed, so a parent polling PATH never reads half a number.
#pragma once

#include <string>

#include "common/status.h"

namespace ite {

Status WriteReadyFile(const std::string& path, int port);

}  // namespace ite
