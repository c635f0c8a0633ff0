// Prometheus text exposition (format 0.0.4): a writer for families and samples, and a
// fixed-bucket histogram that many threads may observe into.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ite {

class PrometheusWriter {
 public:
  // `type`: "counter", "gauge" or "histogram".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  // `labels` is the inside of the braces, already escaped (`worker="0"`), or empty.
  void Sample(std::string_view name, std::string_view labels, double value);
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// Escapes a label value (backslash, quote, newline).
std::string PrometheusLabel(std::string_view value);

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implied
  void Observe(double value);
  // name_bucket{le=...}, name_sum and name_count, under a family the caller declared.
  void Write(PrometheusWriter& out, std::string_view name) const;
  uint64_t count() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace ite
