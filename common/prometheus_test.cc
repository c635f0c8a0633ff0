// Prometheus text: histogram buckets are cumulative with the bound inclusive, label values
// escaped, special values spelled as the format wants.
#include "common/prometheus.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

TEST(PrometheusTest, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram h({0.1, 1.0});
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0}) h.Observe(v);
  PrometheusWriter w;
  w.Family("x_seconds", "histogram", "test");
  h.Write(w, "x_seconds");
  EXPECT_EQ(w.text(),
            "# HELP x_seconds test\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"0.1\"} 2\n"
            "x_seconds_bucket{le=\"1\"} 4\n"
            "x_seconds_bucket{le=\"+Inf\"} 5\n"
            "x_seconds_sum 4.65\n"
            "x_seconds_count 5\n");
  EXPECT_EQ(h.count(), 5u);
}

TEST(PrometheusTest, LabelsAndSpecialValues) {
  EXPECT_EQ(PrometheusLabel("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  PrometheusWriter w;
  w.Sample("g", "worker=\"0\"", 1.0 / 0.0);
  w.Sample("g", "", 0.25);
  EXPECT_EQ(w.text(), "g{worker=\"0\"} +Inf\ng 0.25\n");
}

}  // namespace
}  // namespace ite
