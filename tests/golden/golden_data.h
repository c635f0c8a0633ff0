// The transformers goldens of tests/data/golden (made by tests/golden/make_goldens.py), read by
// the CPU and the CUDA backends' golden tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ite::golden {

struct Golden {
  nlohmann::json meta;        // model, sequences, vocab_size, max_abs_logit, logits_shape
  std::vector<float> logits;  // [sum(len), vocab]
};

// tests/data/golden/<name>.json and its logits, under the source tree `source_dir`.
inline Golden Read(const std::string& source_dir, const std::string& name) {
  const std::string dir = source_dir + "/tests/data/golden/";
  Golden g;
  std::ifstream meta(dir + name + ".json");
  EXPECT_TRUE(meta.good()) << dir + name + ".json";
  if (!meta.good()) return g;
  g.meta = nlohmann::json::parse(meta);
  std::ifstream bin(dir + g.meta["logits_file"].get<std::string>(), std::ios::binary);
  auto shape = g.meta["logits_shape"].get<std::vector<int64_t>>();
  g.logits.resize(shape[0] * shape[1]);
  bin.read(reinterpret_cast<char*>(g.logits.data()), g.logits.size() * sizeof(float));
  EXPECT_TRUE(bin.good());
  return g;
}

}  // namespace ite::golden
