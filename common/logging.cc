#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <chrono>
#include <cstdio>

namespace ite {
namespace {

// A record's payload starts with this byte, then its fields as a JSON object; the JSON
// formatter splices them into the line instead of quoting them as a message.
constexpr char kRecordMark = '\x1e';

LogFormat g_format = LogFormat::kText;

class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string program) : program_(std::move(program)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count();
    nlohmann::json line = {{"ts", static_cast<double>(us) * 1e-6},
                           {"level", spdlog::level::to_string_view(msg.level).data()},
                           {"program", program_}};
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!payload.empty() && payload[0] == kRecordMark) {
      nlohmann::json fields = nlohmann::json::parse(payload.substr(1), nullptr, false);
      if (fields.is_object()) line.update(fields);
    } else {
      line["msg"] = std::string(payload);
    }
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(program_);
  }

 private:
  std::string program_;
};

}  // namespace

StatusOr<LogOptions> ParseLogOptions(const std::string& level, const std::string& format) {
  LogOptions o;
  o.level = spdlog::level::from_str(level);
  if (o.level == spdlog::level::off && level != "off") {
    return InvalidArgument("--log-level {}: one of trace, debug, info, warn, error, off", level);
  }
  if (format == "json") {
    o.format = LogFormat::kJson;
  } else if (format != "text") {
    return InvalidArgument("--log-format {}: text or json", format);
  }
  return o;
}

void InitLogging(const char* program, bool verbose) {
  LogOptions o;
  o.level = verbose ? spdlog::level::debug : spdlog::level::info;
  InitLogging(program, o);
}

void InitLogging(const char* program, const LogOptions& options) {
  auto logger = spdlog::stderr_color_mt(program);
  g_format = options.format;
  if (options.format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>(program));
  } else {
    logger->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  }
  logger->set_level(options.level);
  spdlog::set_default_logger(logger);
}

std::optional<int> InitLoggingOrExit(const char* program, bool verbose, const std::string& level,
                                     const std::string& format) {
  StatusOr<LogOptions> options = ParseLogOptions(verbose ? "debug" : level, format);
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", options.status().message().c_str());
    return 2;
  }
  InitLogging(program, *options);
  return std::nullopt;
}

void LogRecord(std::string_view event, const nlohmann::json& fields) {
  if (!spdlog::should_log(spdlog::level::info)) return;
  if (g_format == LogFormat::kJson) {
    nlohmann::json all = fields;
    all["event"] = std::string(event);
    spdlog::info("{}{}", kRecordMark,
                 all.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string text(event);
  for (const auto& [key, value] : fields.items()) {
    text += ' ';
    text += key;
    text += '=';
    text += value.is_string()
                ? value.get<std::string>()
                : value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  spdlog::info("{}", text);
}

}  // namespace ite
