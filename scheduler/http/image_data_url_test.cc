// data: URLs of OpenAI image_url parts: base64 against RFC 4648's test vectors, the media types
// the decoder takes, and a table of bad URLs (network URLs among them) each refused naming why.
#include "scheduler/http/image_data_url.h"

#include <gtest/gtest.h>

#include "common/image/image_decoder.h"

namespace ite {
namespace {

std::string Decoded(std::string_view in) {
  std::string out;
  size_t bad = 0;
  EXPECT_TRUE(Base64Decode(in, &out, &bad)) << in << " bad at " << bad;
  return out;
}

TEST(Base64Test, Rfc4648Vectors) {
  EXPECT_EQ(Decoded(""), "");
  EXPECT_EQ(Decoded("Zg=="), "f");
  EXPECT_EQ(Decoded("Zm8="), "fo");
  EXPECT_EQ(Decoded("Zm9v"), "foo");
  EXPECT_EQ(Decoded("Zm9vYg=="), "foob");
  EXPECT_EQ(Decoded("Zm9vYmE="), "fooba");
  EXPECT_EQ(Decoded("Zm9vYmFy"), "foobar");
  // Padding is optional.
  EXPECT_EQ(Decoded("Zg"), "f");
  EXPECT_EQ(Decoded("Zm8"), "fo");
  // Every byte value, through the whole alphabet (+ and / included).
  EXPECT_EQ(Decoded("AP8Q/w+A"), std::string("\x00\xff\x10\xff\x0f\x80", 6));
}

TEST(Base64Test, RejectsBadTextAtItsOffset) {
  struct Case {
    std::string in;
    size_t bad_at;
  };
  const std::vector<Case> cases = {
      {"Zm9v YmFy", 4},   // whitespace
      {"Zm9v\nYmFy", 4},  // a line break
      {"Zm9-", 3},        // URL-safe alphabet
      {"Z", 1},           // 6 bits: no byte
      {"Zg=", 3},         // padding to a wrong length
      {"Zg==Zg==", 2},    // padding in the middle
      {"====", 0},        // nothing but padding
      {"Zh==", 1},        // non-zero bits after the last byte (not canonical)
      {std::string("Zm\0v", 4), 2},
  };
  for (const Case& c : cases) {
    std::string out;
    size_t bad = 99;
    EXPECT_FALSE(Base64Decode(c.in, &out, &bad)) << c.in;
    EXPECT_EQ(bad, c.bad_at) << c.in;
  }
}

TEST(ImageDataUrlTest, TakesBase64ImagesOfSupportedTypes) {
  StatusOr<ImageInput> im = ImageFromDataUrl("data:image/png;base64,iVBORw0KGgo=", "u");
  ASSERT_TRUE(im.ok()) << im.status().ToString();
  EXPECT_EQ(im->mime_type, "image/png");
  EXPECT_EQ(im->data, "\x89PNG\r\n\x1a\n");
  // Scheme and media type are case-insensitive; parameters before ;base64 are allowed.
  im = ImageFromDataUrl("DATA:Image/JPEG;name=x.jpg;BASE64,/9j/", "u");
  ASSERT_TRUE(im.ok()) << im.status().ToString();
  EXPECT_EQ(im->mime_type, "image/jpeg");
  EXPECT_EQ(im->data, "\xff\xd8\xff");
  im = ImageFromDataUrl("data:image/gif;base64,R0lGODlh", "u");
  ASSERT_TRUE(im.ok());
  EXPECT_EQ(im->data, "GIF89a");
  EXPECT_TRUE(ImageFromDataUrl("data:image/jpg;base64,/9j/", "u").ok());
  // WebP where the build decodes it ("RIFF").
  EXPECT_EQ(ImageFromDataUrl("data:image/webp;base64,UklGRg==", "u").ok(),
            IsSupportedImageType("image/webp"));
}

TEST(ImageDataUrlTest, BadUrlsSayWhy) {
  struct Case {
    std::string url;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"http://example.com/cat.png", "does not fetch images from the network"},
      {"HTTPS://example.com/cat.png", "does not fetch images from the network"},
      {"file:///etc/passwd", "not a data: URL"},
      {"ftp://x/y.png", "not a data: URL"},
      {"iVBORw0KGgo=", "not a data: URL"},
      {"", "not a data: URL"},
      {"data:image/png;base64", "without a ','"},
      {"data:image/png,%89PNG", "not base64"},
      {"data:;base64,iVBORw0KGgo=", "names no media type"},
      {"data:text/plain;base64,aGk=", "unsupported image type 'text/plain'"},
      {"data:image/bmp;base64,Qk0=", "unsupported image type 'image/bmp'"},
      {"data:image/png;base64,", "holds no data"},
      {"data:image/png;base64,iVBOR w0KGgo", "invalid base64 at data character 5 (' ')"},
      {"data:image/png;base64,iVBOR\x01", "invalid base64 at data character 5 (byte 0x01)"},
      {"data:image/png;base64,iVBORw0KG", "is cut short"},
  };
  for (const Case& c : cases) {
    StatusOr<ImageInput> im = ImageFromDataUrl(c.url, "messages[0].content[1].image_url.url");
    ASSERT_FALSE(im.ok()) << c.url;
    EXPECT_EQ(im.status().code(), StatusCode::kInvalidArgument);
    const std::string m(im.status().message());
    EXPECT_EQ(m.rfind("messages[0].content[1].image_url.url: ", 0), 0u) << m;
    EXPECT_NE(m.find(c.says), std::string::npos) << c.url << " -> " << m;
  }
}

TEST(ImageDataUrlTest, MessagesQuoteOnlyTheStartOfALongUrl) {
  const std::string url = "https://example.com/" + std::string(1 << 20, 'a');
  StatusOr<ImageInput> im = ImageFromDataUrl(url, "u");
  ASSERT_FALSE(im.ok());
  EXPECT_LT(im.status().message().size(), 300u);
}

}  // namespace
}  // namespace ite
