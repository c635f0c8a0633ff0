#include "common/prometheus.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ite {

void PrometheusWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusWriter::Sample(std::string_view name, std::string_view labels, double value) {
  const std::string v = std::isinf(value)   ? (value > 0 ? "+Inf" : "-Inf")
                        : std::isnan(value) ? "NaN"
                                            : fmt::format("{}", value);
  if (labels.empty()) {
    text_ += fmt::format("{} {}\n", name, v);
  } else {
    text_ += fmt::format("{}{{{}}} {}\n", name, labels, v);
  }
}

std::string PrometheusLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

void Histogram::Write(PrometheusWriter& out, std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? fmt::format("{}", bounds_[i]) : "+Inf";
    out.Sample(fmt::format("{}_bucket", name), fmt::format("le=\"{}\"", le),
               static_cast<double>(cumulative));
  }
  out.Sample(fmt::format("{}_sum", name), "", sum_);
  out.Sample(fmt::format("{}_count", name), "", static_cast<double>(count_));
}

}  // namespace ite
