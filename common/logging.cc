#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace ite {

void InitLogging(const char* program, bool verbose) {
  auto logger = spdlog::stderr_color_mt(program);
  logger->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  logger->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace ite
