// Hostile bytes at the served gRPC edge: a REAL ite-serve (CPU worker, SmolLM2) gets request
// messages built byte by byte (so nothing on the client side checks or fixes them): invalid
// UTF-8 in string fields, bytes that are no message, and every field of every public request
// message set to values a client should not send. Each call must end with a clear status (never
// INTERNAL or UNKNOWN, never an empty message), and the server must go on serving.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

namespace pb = google::protobuf;
using std::chrono::seconds;

// Placeholder written into a string field, then swapped on the wire for invalid UTF-8 of the
// same length (protobuf's own serializer would refuse or flag the invalid string).
constexpr char kMarker[] = "@@BAD@";
const std::string kInvalidUtf8("\xC3\x28\xA0\xA1\xFF\xFE", 6);

std::string SwapMarker(std::string wire) {
  for (size_t at = wire.find(kMarker); at != std::string::npos; at = wire.find(kMarker, at)) {
    wire.replace(at, kInvalidUtf8.size(), kInvalidUtf8);
  }
  return wire;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// One call with `bytes` as the whole request, through the generic (bytes-only) call path.
grpc::Status CallRaw(grpc::Channel* channel, const std::string& method, bool streaming,
                     const std::string& bytes) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(60));
  const grpc::ByteBuffer request = ToBuffer(bytes);
  if (!streaming) {
    grpc::internal::RpcMethod rpc(method.c_str(), grpc::internal::RpcMethod::NORMAL_RPC);
    grpc::ByteBuffer response;
    return grpc::internal::BlockingUnaryCall(channel, rpc, &ctx, request, &response);
  }
  grpc::internal::RpcMethod rpc(method.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel, rpc, &ctx, request));
  grpc::ByteBuffer chunk;
  while (reader->Read(&chunk)) {
  }
  return reader->Finish();
}

// Clear: OK, or a code a client can act on with a message saying why.
::testing::AssertionResult IsClear(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::INTERNAL || s.error_code() == grpc::StatusCode::UNKNOWN)
    return ::testing::AssertionFailure() << "code " << s.error_code() << ": " << s.error_message();
  if (!s.ok() && s.error_message().empty())
    return ::testing::AssertionFailure() << "code " << s.error_code() << " with no message";
  return ::testing::AssertionSuccess();
}

struct Method {
  std::string path;  // "/ite.v1.Generation/Generate"
  bool streaming;
  std::function<std::unique_ptr<pb::Message>()> valid;  // a request the server serves
};

std::vector<Method> PublicMethods() {
  return {
      {"/ite.v1.Generation/Generate", true,
       [] { return std::make_unique<ite::v1::GenerateRequest>(Greedy("Hello", 2)); }},
      {"/ite.v1.Generation/Tokenize", false,
       [] {
         auto r = std::make_unique<ite::v1::TokenizeRequest>();
         r->set_text("Hello");
         return r;
       }},
      {"/ite.v1.Generation/ModelInfo", false,
       [] { return std::make_unique<ite::v1::ModelInfoRequest>(); }},
      {"/ite.v1.Generation/Stats", false,
       [] { return std::make_unique<ite::v1::StatsRequest>(); }},
  };
}

// A malformed value for one field: `set` writes it into the field's message.
struct Bad {
  std::string what;
  std::function<void(pb::Message*, const pb::FieldDescriptor*)> set;
};

std::vector<Bad> BadValues(const pb::FieldDescriptor* f) {
  using T = pb::FieldDescriptor;
  auto put = [](auto setter, auto adder) {
    return [setter, adder](pb::Message* m, const T* f) {
      const pb::Reflection* r = m->GetReflection();
      if (f->is_repeated()) {
        adder(r, m, f);
      } else {
        setter(r, m, f);
      }
    };
  };
  std::vector<Bad> out;
  switch (f->cpp_type()) {
    case T::CPPTYPE_INT32:
      for (int32_t v : {std::numeric_limits<int32_t>::min(), -1, std::numeric_limits<int32_t>::max()})
        out.push_back({std::to_string(v),
                       put([v](auto* r, auto* m, auto* f) { r->SetInt32(m, f, v); },
                           [v](auto* r, auto* m, auto* f) { r->AddInt32(m, f, v); })});
      break;
    case T::CPPTYPE_INT64:
      for (int64_t v : {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()})
        out.push_back({std::to_string(v),
                       put([v](auto* r, auto* m, auto* f) { r->SetInt64(m, f, v); },
                           [v](auto* r, auto* m, auto* f) { r->AddInt64(m, f, v); })});
      break;
    case T::CPPTYPE_UINT64:
      for (uint64_t v : {uint64_t{0}, std::numeric_limits<uint64_t>::max()})
        out.push_back({std::to_string(v),
                       put([v](auto* r, auto* m, auto* f) { r->SetUInt64(m, f, v); },
                           [v](auto* r, auto* m, auto* f) { r->AddUInt64(m, f, v); })});
      break;
    case T::CPPTYPE_FLOAT:
      for (float v : {std::nanf(""), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity(), -1.0f, 3.0e38f, 1e-45f})
        out.push_back({std::to_string(v),
                       put([v](auto* r, auto* m, auto* f) { r->SetFloat(m, f, v); },
                           [v](auto* r, auto* m, auto* f) { r->AddFloat(m, f, v); })});
      break;
    case T::CPPTYPE_BOOL:
      out.push_back({"true", put([](auto* r, auto* m, auto* f) { r->SetBool(m, f, true); },
                                 [](auto* r, auto* m, auto* f) { r->AddBool(m, f, true); })});
      break;
    case T::CPPTYPE_STRING: {
      // `string` fields: invalid UTF-8 (the parser's check). `bytes` fields holding text or an
      // image: invalid UTF-8, an empty value and bytes that are no image.
      std::vector<std::string> values = {kMarker};
      if (f->type() == T::TYPE_BYTES) values = {kMarker, "", std::string("\x89PNG\r\n\x1a\n\0\0", 10)};
      for (const std::string& v : values)
        out.push_back({v == kMarker ? "invalid UTF-8" : "bytes of size " + std::to_string(v.size()),
                       put([v](auto* r, auto* m, auto* f) { r->SetString(m, f, v); },
                           [v](auto* r, auto* m, auto* f) { r->AddString(m, f, v); })});
      break;
    }
    default:
      break;  // enums and doubles: the request messages have none
  }
  return out;
}

// One case: the path of the field, the value, the wire bytes, and whether the string parser
// must name the field.
struct Case {
  std::string field;
  std::string what;
  std::string wire;
  bool names_field;
};

// Every leaf field under `type` (message fields entered once; a repeated field gets one
// element), each with each of its bad values, set on a copy of `base`.
void Walk(const pb::Message& base, const pb::Descriptor* type, const std::string& prefix,
          const std::function<pb::Message*(pb::Message*)>& locate, int depth,
          std::vector<Case>* cases) {
  if (depth > 4) return;
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    const std::string path = prefix + f->name() + (f->is_repeated() ? "[0]" : "");
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      auto inner = [locate, f](pb::Message* root) -> pb::Message* {
        pb::Message* m = locate(root);
        const pb::Reflection* r = m->GetReflection();
        if (!f->is_repeated()) return r->MutableMessage(m, f);
        return r->FieldSize(*m, f) > 0 ? r->MutableRepeatedMessage(m, f, 0) : r->AddMessage(m, f);
      };
      Walk(base, f->message_type(), path + ".", inner, depth + 1, cases);
      continue;
    }
    for (const Bad& bad : BadValues(f)) {
      std::unique_ptr<pb::Message> m(base.New());
      m->CopyFrom(base);
      bad.set(locate(m.get()), f);
      const bool invalid_string = bad.what == "invalid UTF-8";
      cases->push_back({path, bad.what, SwapMarker(m->SerializeAsString()),
                       invalid_string && f->type() == pb::FieldDescriptor::TYPE_STRING});
    }
  }
}

class MalformedRequestE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = ReadEnv();
    if (!env_.missing.empty()) GTEST_SKIP() << env_.missing;
    ASSERT_TRUE(serve_.Start(env_, 1));
    channel_ = grpc::CreateChannel(serve_.address(), grpc::InsecureChannelCredentials());
  }

  // The server still answers a good request after the bad ones.
  void ExpectStillServing() {
    auto stub = serve_.Stub();
    GenerateResult ok = Generate(*stub, Greedy("Hello", 2), seconds(60));
    EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
    EXPECT_EQ(ok.tokens.size(), 2u);
  }

  Env env_;
  ServeProcess serve_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Invalid UTF-8 in the string fields a client fills most (and that gRPC's own parser refused
// with INTERNAL and no message), and garbage as the whole message of each method.
TEST_F(MalformedRequestE2E, InvalidUtf8AndGarbageGetInvalidArgumentNamingTheField) {
  struct Named {
    std::string field;
    std::function<void(ite::v1::GenerateRequest*)> fill;
  };
  const std::vector<Named> named = {
      {"stop[1]",
       [](auto* r) {
         r->add_stop("fine");
         r->add_stop(kMarker);
       }},
      {"request_id", [](auto* r) { r->set_request_id(kMarker); }},
      {"model", [](auto* r) { r->set_model(kMarker); }},
      {"chat.messages[1].role",
       [](auto* r) {
         auto* chat = r->mutable_chat();
         chat->add_messages()->set_role("user");
         chat->add_messages()->set_role(kMarker);
       }},
      {"images[0].mime_type", [](auto* r) { r->add_images()->set_mime_type(kMarker); }},
  };
  for (const Named& n : named) {
    ite::v1::GenerateRequest r = Greedy("Hello", 2);
    n.fill(&r);
    grpc::Status s = CallRaw(channel_.get(), "/ite.v1.Generation/Generate", true,
                             SwapMarker(r.SerializeAsString()));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << n.field;
    EXPECT_EQ(s.error_message(), n.field + ": not valid UTF-8");
  }
  const std::string garbage("\x0f\x01\xff\xff\xff\xff", 6);
  for (const Method& m : PublicMethods()) {
    grpc::Status s = CallRaw(channel_.get(), m.path, m.streaming, garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << m.path;
    const std::string type = m.valid()->GetDescriptor()->full_name();
    EXPECT_NE(s.error_message().find("not a valid " + type + " message"), std::string::npos)
        << m.path << ": " << s.error_message();
  }
  ExpectStillServing();
}

// Every field of every public request message, each set to values no client should send (and
// each message truncated, or holding a length that runs past its end): a clear status each time.
TEST_F(MalformedRequestE2E, EveryFieldOfEveryRequestWithMalformedValuesGetsAClearStatus) {
  int calls = 0, refused = 0;
  for (const Method& m : PublicMethods()) {
    std::unique_ptr<pb::Message> base = m.valid();
    std::vector<Case> cases;
    Walk(*base, base->GetDescriptor(), "", [](pb::Message* root) { return root; }, 0, &cases);
    const std::string valid = base->SerializeAsString();
    if (!valid.empty()) {
      cases.push_back({"(message)", "truncated", valid.substr(0, valid.size() - 1), false});
    }
    // Field 1, length-delimited, claiming 100 bytes that are not there.
    cases.push_back({"(message)", "length past the end", std::string("\x0a\x64hi", 4), false});
    // A field number no message has, as an unknown field: ignored, as protobuf does.
    cases.push_back({"(message)", "unknown field", valid + std::string("\xf8\xff\x03\x01", 4),
                     false});
    for (const Case& c : cases) {
      grpc::Status s = CallRaw(channel_.get(), m.path, m.streaming, c.wire);
      ++calls;
      refused += !s.ok();
      EXPECT_TRUE(IsClear(s)) << m.path << " " << c.field << " = " << c.what;
      if (c.names_field) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << m.path << " " << c.field;
        EXPECT_EQ(s.error_message(), c.field + ": not valid UTF-8") << m.path;
      }
    }
  }
  std::cout << calls << " malformed requests, " << refused << " refused, none unclear\n";
  EXPECT_GT(calls, 100);
  ExpectStillServing();
}

}  // namespace
}  // namespace ite::e2e
