// llama.cpp's greedy continuation of a prompt with the top logits at every step, to set beside
// ours (ite-client generate --top-logprobs) where two runs of the same GGUF part. Peer tooling,
// built by hand against a llama.cpp build (bench/peers/llama_cpp_cpu.py makes one):
//
//   g++ -O2 -std=c++17 bench/peers/llama_cpp_logits.cc -I$SRC/include -I$SRC/ggml/include
//     $B/src/libllama.a $B/ggml/src/libggml.a $B/ggml/src/libggml-cpu.a \
//     $B/ggml/src/libggml-base.a -fopenmp -lpthread -o llama_cpp_logits
//   llama_cpp_logits MODEL.gguf PROMPT_FILE N_TOKENS [TOP]
//
// The prompt file is the text after chat-template rendering; special tokens in it are parsed
// (no BOS added: the template writes its own). One thread, so nothing depends on the split.
// Output: per generated token its id, piece, and the TOP best (piece, id, logit), then the gap
// between the first two.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

namespace {

std::string Piece(const llama_vocab* vocab, llama_token t) {
  char buf[256];
  const int n = llama_token_to_piece(vocab, t, buf, sizeof(buf), 0, true);
  std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  for (char& c : s) {
    if (c == '\n') c = '|';  // one line per step
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf PROMPT_FILE N_TOKENS [TOP]\n", argv[0]);
    return 2;
  }
  const int steps = std::atoi(argv[3]);
  const int top = argc > 4 ? std::atoi(argv[4]) : 3;
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string prompt = ss.str();

  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (model == nullptr) return 1;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::vector<llama_token> tokens(prompt.size() + 8);
  const int n = llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()),
                               tokens.data(), static_cast<int32_t>(tokens.size()),
                               /*add_special=*/false, /*parse_special=*/true);
  if (n <= 0) return 1;
  tokens.resize(static_cast<size_t>(n));
  std::printf("prompt %d tokens:", n);
  for (llama_token t : tokens) std::printf(" %d", t);
  std::printf("\n");

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n + steps + 8);
  cp.n_batch = cp.n_ctx;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) return 1;
  const int vocab_size = llama_vocab_n_tokens(vocab);
  std::vector<int> order(static_cast<size_t>(vocab_size));
  llama_batch batch = llama_batch_get_one(tokens.data(), n);
  llama_token next = 0;
  for (int step = 0; step < steps; ++step) {
    if (llama_decode(ctx, batch) != 0) return 1;
    const float* logits = llama_get_logits_ith(ctx, -1);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::max(top, 2), order.end(),
                      [&](int a, int b) { return logits[a] > logits[b]; });
    next = order[0];
    std::printf("%3d %6d %-14s", step, next, ("'" + Piece(vocab, next) + "'").c_str());
    for (int k = 0; k < top; ++k) {
      const int id = order[static_cast<size_t>(k)];
      std::printf(" '%s' %d:%.4f", Piece(vocab, id).c_str(), id, logits[id]);
    }
    std::printf("  gap %.4f\n", logits[order[0]] - logits[order[1]]);
    if (llama_vocab_is_eog(vocab, next)) break;
    batch = llama_batch_get_one(&next, 1);
  }
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
