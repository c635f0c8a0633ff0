#include "proto/grpc_security.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ite {
namespace {

namespace fs = std::filesystem;

// A CA and a certificate from it, made with the openssl command for this test alone.
class GrpcSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        (fs::temp_directory_path() / ("ite-security-test." + std::to_string(::getpid()))).string());
    fs::create_directories(*dir_);
    const std::string d = *dir_;
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string cmd =
        "cd '" + d + "' && openssl req -x509" + ec +
        " -keyout ca.key -out ca.pem -days 1 -subj '/CN=test CA' 2>/dev/null && openssl req" + ec +
        " -keyout node.key -out node.csr -subj '/CN=node-cn' 2>/dev/null && " +
        "printf 'subjectAltName=DNS:node.example,IP:127.0.0.1\\n' > ext.cnf && openssl x509 -req "
        "-in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 1 "
        "-extfile ext.cnf 2>/dev/null && openssl req -x509" +
        ec + " -keyout plain.key -out plain.pem -days 1 -subj '/CN=only-cn' 2>/dev/null";
    have_openssl_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }
  void SetUp() override {
    if (!have_openssl_) GTEST_SKIP() << "the openssl command is missing (scripts/setup.sh)";
  }
  static std::string P(const std::string& name) { return *dir_ + "/" + name; }

  inline static std::string* dir_ = nullptr;
  inline static bool have_openssl_ = false;
};

TEST_F(GrpcSecurityTest, LoopbackHosts) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.7"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
}

TEST_F(GrpcSecurityTest, MisconfigurationsAreErrorsNamingTheFlag) {
  auto keys = std::make_shared<const ApiKeys>(ApiKeys::Load({"k1"}, {}).value());
  struct Case {
    ServerSecurityOptions o;
    std::string expect;
  };
  std::vector<Case> cases;
  cases.push_back({{TlsFiles{P("node.pem"), "", ""}, false, nullptr, "127.0.0.1"}, "--tls-key"});
  cases.push_back({{TlsFiles{"", "", P("ca.pem")}, false, nullptr, "127.0.0.1"}, "--tls-ca"});
  cases.push_back(
      {{TlsFiles{P("node.pem"), P("node.key"), ""}, true, nullptr, "127.0.0.1"}, "--tls-ca"});
  cases.push_back({{TlsFiles{}, false, keys, "0.0.0.0"}, "plaintext"});
  cases.push_back({{TlsFiles{P("missing.pem"), P("node.key"), ""}, false, nullptr, "127.0.0.1"},
                   "cannot be read"});
  for (size_t i = 0; i < cases.size(); ++i) {
    StatusOr<std::shared_ptr<grpc::ServerCredentials>> c = MakeServerCredentials(cases[i].o);
    ASSERT_FALSE(c.ok()) << "case " << i;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << "case " << i;
    EXPECT_NE(c.status().message().find(cases[i].expect), std::string::npos)
        << "case " << i << ": " << c.status().message();
  }
}

TEST_F(GrpcSecurityTest, ValidSettingsMakeCredentials) {
  auto keys = std::make_shared<const ApiKeys>(ApiKeys::Load({"k1"}, {}).value());
  for (const ServerSecurityOptions& o :
       {ServerSecurityOptions{TlsFiles{}, false, nullptr, "0.0.0.0"},
        ServerSecurityOptions{TlsFiles{}, false, keys, "127.0.0.1"},
        ServerSecurityOptions{TlsFiles{P("node.pem"), P("node.key"), ""}, false, keys, "0.0.0.0"},
        ServerSecurityOptions{TlsFiles{P("node.pem"), P("node.key"), P("ca.pem")}, true, keys,
                              "0.0.0.0"}}) {
    StatusOr<std::shared_ptr<grpc::ServerCredentials>> c = MakeServerCredentials(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_NE(*c, nullptr);
  }
  EXPECT_TRUE(MakeChannelCredentials(TlsFiles{}).ok());
  EXPECT_TRUE(MakeChannelCredentials(TlsFiles{"", "", P("ca.pem")}).ok());
  EXPECT_TRUE(MakeChannelCredentials(TlsFiles{P("node.pem"), P("node.key"), P("ca.pem")}).ok());
  EXPECT_FALSE(MakeChannelCredentials(TlsFiles{P("node.pem"), "", P("ca.pem")}).ok());
}

TEST_F(GrpcSecurityTest, NonPemFilesAreRejected) {
  std::ofstream(P("junk.pem")) << "not a certificate";
  StatusOr<std::string> pem = ReadPemFile(P("junk.pem"), "--tls-ca");
  ASSERT_FALSE(pem.ok());
  EXPECT_NE(pem.status().message().find("not a PEM file"), std::string::npos);
}

TEST_F(GrpcSecurityTest, CertificateNameIsTheFirstDnsNameElseTheCommonName) {
  StatusOr<std::string> dns = CertificateName(P("node.pem"));
  ASSERT_TRUE(dns.ok()) << dns.status().ToString();
  EXPECT_EQ(*dns, "node.example");
  StatusOr<std::string> cn = CertificateName(P("plain.pem"));
  ASSERT_TRUE(cn.ok()) << cn.status().ToString();
  EXPECT_EQ(*cn, "only-cn");
  EXPECT_FALSE(CertificateName(P("node.key")).ok());
}

}  // namespace
}  // namespace ite
