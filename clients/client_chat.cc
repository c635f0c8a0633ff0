// `ite-client chat`: one conversation, kept in memory and sent whole with every turn.
#include <fmt/format.h>

#include <atomic>
#include <cstdio>

#include "clients/client_common.h"
#include "clients/client_generate.h"
#include "clients/interrupt.h"
#include "clients/line_reader.h"

namespace ite::client {
namespace {

constexpr const char* kChatHelp =
    "/image FILE adds an image to your next message, /history shows the conversation, /reset "
    "clears it, /exit or Ctrl-D quits; Ctrl-C stops the answer being written";

void AddMessage(ite::v1::ChatMessages* history, const char* role, const std::string& content) {
  auto* m = history->add_messages();
  m->set_role(role);
  m->set_content(content);
}

std::string ServedModel(ite::v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ite::v1::ModelInfoResponse info;
  if (!stub.ModelInfo(&ctx, ite::v1::ModelInfoRequest(), &info).ok()) return "";
  return info.model_name();
}

}  // namespace

int RunChat(const GenerateOptions& o) {
  grpc::Status status;
  auto channel = Connect(o.addr, std::chrono::milliseconds(o.connect_timeout_ms), &status);
  if (!channel) return Fail("chat", status, o.addr);
  auto stub = ite::v1::Generation::NewStub(channel);
  InstallInterruptHandler();
  LineReader reader("> ");

  ite::v1::ChatMessages history;
  if (!o.system.empty()) AddMessage(&history, "system", o.system);
  const std::string model = ServedModel(*stub);
  fmt::print(stderr, "chat with {} at {} ({})\n", model.empty() ? "the model" : model, o.addr,
             kChatHelp);
  std::string line;
  std::vector<ite::v1::Image> pending;  // /image files for the next user message
  while (true) {
    LineStatus got = reader.Read(&line);
    if (got == LineStatus::kEof) break;
    if (got == LineStatus::kInterrupted) continue;
    if (line.empty()) continue;
    reader.Remember(line);
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      const int turns = history.messages_size();
      history.clear_messages();
      pending.clear();
      if (!o.system.empty()) AddMessage(&history, "system", o.system);
      fmt::print(stderr, "[history cleared: {} message(s) dropped{}]\n",
                 turns - history.messages_size(),
                 o.system.empty() ? "" : "; the system message stays");
      continue;
    }
    if (line == "/history") {
      for (const auto& m : history.messages())
        fmt::print(stderr, "[{}] {}\n", m.role(), m.content());
      fmt::print(stderr, "[{} message(s)]\n", history.messages_size());
      continue;
    }
    if (line.rfind("/image ", 0) == 0) {
      ite::v1::Image image;
      if (ReadImage(line.substr(7), &image)) pending.push_back(std::move(image));
      continue;
    }
    if (line.front() == '/') {
      fmt::print(stderr, "[unknown command {}: {}]\n", line, kChatHelp);
      continue;
    }
    AddMessage(&history, "user", line);
    if (!pending.empty()) {  // the images, then the text, as content parts
      ite::v1::ChatMessage* m = history.mutable_messages(history.messages_size() - 1);
      m->clear_content();
      for (ite::v1::Image& image : pending) *m->add_parts()->mutable_image() = std::move(image);
      m->add_parts()->set_text(line);
      pending.clear();
    }
    ite::v1::GenerateRequest req;
    *req.mutable_chat() = history;
    FillRequest(o, &req);
    std::string answer;
    grpc::ClientContext ctx;
    std::atomic<bool> stopped{false};
    {
      OnInterrupt cancel([&] {
        stopped = true;
        ctx.TryCancel();
      });
      status = StreamToStdout(*stub, req, o, &ctx, &answer);
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (stopped) {
      // What was shown stays the assistant's turn, so the next question follows on from it.
      if (answer.empty()) {
        history.mutable_messages()->RemoveLast();
      } else {
        AddMessage(&history, "assistant", answer);
      }
      fmt::print(stderr, "[answer stopped; the history is kept]\n");
      continue;
    }
    if (!status.ok()) {
      int rc = Fail("chat", status, o.addr);
      // The server going away ends the session; a rejected turn is dropped and chat goes on.
      if (rc == kExitUnavailable) return rc;
      history.mutable_messages()->RemoveLast();
      continue;
    }
    AddMessage(&history, "assistant", answer);
  }
  return kExitOk;
}

}  // namespace ite::client
