// Logging goes through spdlog; diagnostics go to stderr so stdout stays for program output.
//
// Two formats: text ("[12:00:00.000] [ite-scheduler] [info] message") and JSON lines
// ({"ts": ..., "level": ..., "program": ..., "msg": ...}), for log collectors. LogRecord writes
// one structured record (a request's summary): in JSON its fields are the line's own fields,
// in text they follow the event name as key=value pairs.
#pragma once

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ite {

enum class LogFormat { kText, kJson };

struct LogOptions {
  spdlog::level::level_enum level = spdlog::level::info;
  LogFormat format = LogFormat::kText;
};

// From flag values: level "trace|debug|info|warn|error", format "text|json".
StatusOr<LogOptions> ParseLogOptions(const std::string& level, const std::string& format);

// Routes the default logger to stderr. Call once at the start of main().
void InitLogging(const char* program, bool verbose);
void InitLogging(const char* program, const LogOptions& options);

// From a main's --verbose / --log-level / --log-format: nullopt when logging is set up, else the
// exit code (2, usage error; the message is on stderr).
std::optional<int> InitLoggingOrExit(const char* program, bool verbose, const std::string& level,
                                     const std::string& format);

// One structured record at info level; `fields` is a JSON object.
void LogRecord(std::string_view event, const nlohmann::json& fields);

}  // namespace ite

#define ITE_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define ITE_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define ITE_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define ITE_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
