// Logging goes through spdlog; diagnostics go to stderr so stdout stays for program output.
#pragma once

#include <spdlog/spdlog.h>

namespace ite {
// Routes the default logger to stderr. Call once at the start of main().
void InitLogging(const char* program, bool verbose);
}  // namespace ite

#define ITE_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define ITE_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define ITE_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define ITE_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
