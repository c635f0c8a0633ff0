#include "proto/request_parser.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "proto/ite/v1/generation.pb.h"

namespace ite {
namespace {

const std::string kBad = "ok\xC3(";  // a lead byte followed by a non-continuation byte

// The wire bytes of `m` with the UTF-8 string `marker` replaced by `kBad` (same length, so the
// length prefixes stay right): protobuf's serializer refuses to write invalid UTF-8 itself.
std::string WithBadBytes(const google::protobuf::Message& m, const std::string& marker) {
  std::string wire = m.SerializeAsString();
  size_t at = wire.find(marker);
  EXPECT_NE(at, std::string::npos);
  wire.replace(at, marker.size(), kBad);
  return wire;
}

TEST(RequestParserTest, ValidMessageParses) {
  ite::v1::GenerateRequest req;
  req.set_request_id("r1");
  req.set_prompt("héllo");
  req.add_stop("\n\n");
  ite::v1::GenerateRequest out;
  ASSERT_TRUE(ParseRequestMessage(req.SerializeAsString(), &out).ok());
  EXPECT_EQ(out.request_id(), "r1");
  EXPECT_EQ(out.stop(0), "\n\n");
}

TEST(RequestParserTest, InvalidUtf8InEveryStringFieldIsNamed) {
  const std::string m = "MARK";  // same length as kBad
  ASSERT_EQ(m.size(), kBad.size());
  struct Case {
    const char* field;
    std::function<void(ite::v1::GenerateRequest*)> fill;
  };
  const std::vector<Case> cases = {
      {"request_id", [&](auto* r) { r->set_request_id(m); }},
      {"model", [&](auto* r) { r->set_model(m); }},
      {"stop[1]",
       [&](auto* r) {
         r->add_stop("fine");
         r->add_stop(m);
       }},
      {"chat.messages[1].role",
       [&](auto* r) {
         auto* chat = r->mutable_chat();
         chat->add_messages()->set_role("user");
         chat->add_messages()->set_role(m);
       }},
  };
  for (const Case& c : cases) {
    ite::v1::GenerateRequest req;
    req.set_max_tokens(4);
    c.fill(&req);
    ite::v1::GenerateRequest out;
    Status s = ParseRequestMessage(WithBadBytes(req, m), &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(s.message(), std::string(c.field) + ": not valid UTF-8") << s.message();
  }
}

TEST(RequestParserTest, TokenizeRequestRoleIsNamed) {
  ite::v1::TokenizeRequest req;
  req.mutable_chat()->add_messages()->set_role("ROLE");
  ite::v1::TokenizeRequest out;
  Status s = ParseRequestMessage(WithBadBytes(req, "ROLE"), &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "chat.messages[0].role: not valid UTF-8");
}

TEST(RequestParserTest, GarbageBytesAreNotAMessage) {
  // A field tag with wire type 7 (none exists), a truncated length-delimited field, a varint
  // that never ends.
  for (std::string garbage :
       {std::string("\x0f\x01", 2), std::string("\x1a\x40xyz", 5),
        std::string("\x30\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12)}) {
    ite::v1::GenerateRequest out;
    Status s = ParseRequestMessage(garbage, &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("not a valid ite.v1.GenerateRequest message"), std::string::npos)
        << s.message();
  }
}

TEST(RequestParserTest, ByteBufferInput) {
  ite::v1::GenerateRequest req;
  req.set_model("MARK");
  const std::string wire = WithBadBytes(req, "MARK");
  grpc::Slice slice(wire);
  grpc::ByteBuffer buffer(&slice, 1);
  ite::v1::GenerateRequest out;
  Status s = ParseRequestMessage(buffer, &out);
  EXPECT_EQ(s.message(), "model: not valid UTF-8");
}

}  // namespace
}  // namespace ite
