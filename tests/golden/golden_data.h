// The transformers goldens of tests/data/golden (made by tests/golden/make_goldens.py), read by
// the CPU and the CUDA backends' golden tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "worker/backend/backend.h"

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

// Logits of every row of `ids` (sequence 0, with its `images`), run in prefill chunks of
// `chunk` tokens over blocks 0, 1, ...; the sequence is released afterwards.
inline std::vector<float> PromptLogits(Backend& backend, const std::vector<int32_t>& ids,
                                       std::vector<StepImage> images, int32_t chunk) {
  std::vector<int32_t> blocks;
  for (int32_t b = 0; b * backend.block_size() < static_cast<int32_t>(ids.size()); ++b)
    blocks.push_back(b);
  EXPECT_TRUE(backend.AddSequence(0, SamplingParams{}, ids, 0).ok());
  Status set = backend.SetSequenceImages(0, std::move(images), ids);
  EXPECT_TRUE(set.ok()) << set.ToString();
  std::vector<float> all;
  for (size_t start = 0; start < ids.size(); start += chunk) {
    const size_t n = std::min<size_t>(chunk, ids.size() - start);
    ForwardBatch batch;
    batch.chunks.push_back(LogitsChunk(std::span(ids).subspan(start, n),
                                       static_cast<int32_t>(start), blocks, LogitsMode::kAll));
    std::vector<float> logits;
    Status s = ForwardLogits(backend, batch, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    all.insert(all.end(), logits.begin(), logits.end());
  }
  backend.ReleaseSequence(0);
  return all;
}

}  // namespace ite::golden
