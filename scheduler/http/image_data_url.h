// The image of an OpenAI `image_url` content part, from its URL: only `data:` URLs with base64
// content (RFC 2397, "data:image/png;base64,iVBOR..."). A server that fetched http(s) URLs named
// by clients could be made to reach any address it can (server-side request forgery), and would
// wait on hosts it does not control, so those are refused with a message saying what to send.
//
// Only the URL's syntax, its base64 and its media type are checked here; whether the bytes are a
// whole, decodable image within limits is the image decoder's question (the same one the gRPC
// path asks). Pure function, safe on any input.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "scheduler/generate_input.h"

namespace ite {

// INVALID_ARGUMENT (prefixed with `what`, e.g. "messages[0].content[1].image_url.url") for a URL
// that is not a base64 data: URL of a supported image type.
StatusOr<ImageInput> ImageFromDataUrl(std::string_view url, const std::string& what);

// Standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + /), '=' padding optional; whitespace is
// not allowed, nor non-zero bits after the last byte. False on bad input, with *bad_at the
// offset of the first bad character (in.size() when the length itself is wrong).
bool Base64Decode(std::string_view in, std::string* out, size_t* bad_at);

}  // namespace ite
