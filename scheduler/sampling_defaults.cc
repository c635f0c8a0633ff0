#include "scheduler/sampling_defaults.h"

#include <filesystem>
#include <fstream>

namespace ite {
namespace {

// Reads `key` into `*out` when present; a present key of the wrong type is an error.
template <typename T>
Status ReadNumber(const nlohmann::json& j, const char* key, const std::string& source, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_number()) return InvalidArgument("{}: '{}' must be a number", source, key);
  *out = it->get<T>();
  return Status::Ok();
}

}  // namespace

StatusOr<SamplingParams> SamplingDefaultsFromJson(const nlohmann::json& config,
                                                  const std::string& source) {
  if (!config.is_object()) return InvalidArgument("{}: must be a JSON object", source);
  SamplingParams p;
  ITE_RETURN_IF_ERROR(ReadNumber(config, "temperature", source, &p.temperature));
  ITE_RETURN_IF_ERROR(ReadNumber(config, "top_k", source, &p.top_k));
  ITE_RETURN_IF_ERROR(ReadNumber(config, "top_p", source, &p.top_p));
  ITE_RETURN_IF_ERROR(ReadNumber(config, "min_p", source, &p.min_p));
  ITE_RETURN_IF_ERROR(ReadNumber(config, "repetition_penalty", source, &p.repetition_penalty));
  if (Status s = p.Validate(); !s.ok()) return InvalidArgument("{}: {}", source, s.message());
  return p;
}

StatusOr<SamplingParams> SamplingDefaultsForModel(const std::string& model_path) {
  const std::filesystem::path file = std::filesystem::path(model_path) / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::is_directory(model_path, ec) || !std::filesystem::exists(file, ec)) {
    return SamplingParams();
  }
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("{}: not valid JSON", file.string());
  return SamplingDefaultsFromJson(j, file.string());
}

std::string DescribeSamplingDefaults(const SamplingParams& p) {
  const SamplingParams api;
  std::string out;
  auto add = [&](const char* name, auto value, auto api_value) {
    if (value == api_value) return;
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", name, value);
  };
  add("temperature", p.temperature, api.temperature);
  add("top_k", p.top_k, api.top_k);
  add("top_p", p.top_p, api.top_p);
  add("min_p", p.min_p, api.min_p);
  add("repetition_penalty", p.repetition_penalty, api.repetition_penalty);
  return out.empty() ? "none" : out;
}

}  // namespace ite
