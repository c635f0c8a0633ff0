#include "proto/request_parser.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace ite {
namespace {

namespace pb = google::protobuf;

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

void StringsToBytes(pb::DescriptorProto* m) {
  for (pb::FieldDescriptorProto& f : *m->mutable_field()) {
    if (f.type() == pb::FieldDescriptorProto::TYPE_STRING) {
      f.set_type(pb::FieldDescriptorProto::TYPE_BYTES);
    }
  }
  for (pb::DescriptorProto& nested : *m->mutable_nested_type()) StringsToBytes(&nested);
}

// The same message type with every `string` field turned into `bytes` (the same wire format,
// without the UTF-8 check), so that a message protobuf refused can still be read to find why.
class LaxTwins {
 public:
  const pb::Descriptor* Twin(const pb::Descriptor* type) {
    std::lock_guard<std::mutex> lock(mu_);
    AddFile(type->file());
    return pool_.FindMessageTypeByName(type->full_name());
  }
  pb::MessageFactory* factory() { return &factory_; }

 private:
  void AddFile(const pb::FileDescriptor* file) {
    if (pool_.FindFileByName(file->name()) != nullptr) return;
    for (int i = 0; i < file->dependency_count(); ++i) AddFile(file->dependency(i));
    pb::FileDescriptorProto proto;
    file->CopyTo(&proto);
    for (pb::DescriptorProto& m : *proto.mutable_message_type()) StringsToBytes(&m);
    pool_.BuildFile(proto);  // nullptr only for a broken generated file; Twin then finds none
  }

  std::mutex mu_;
  pb::DescriptorPool pool_;
  pb::DynamicMessageFactory factory_{&pool_};
};

LaxTwins& Twins() {
  static LaxTwins* twins = new LaxTwins();  // never destroyed: used by server threads to the end
  return *twins;
}

// The path of the first field of `orig`'s type that holds invalid UTF-8 in `twin` (the same bytes
// parsed as the lax twin), or "" when there is none.
std::string FindBadUtf8(const pb::Message& twin, const pb::Descriptor* orig,
                        const std::string& prefix) {
  const pb::Reflection* r = twin.GetReflection();
  const pb::Descriptor* td = twin.GetDescriptor();
  for (int i = 0; i < orig->field_count(); ++i) {
    const pb::FieldDescriptor* of = orig->field(i);
    const pb::FieldDescriptor* tf = td->FindFieldByNumber(of->number());
    if (tf == nullptr) continue;
    const std::string name = prefix + of->name();
    if (of->type() == pb::FieldDescriptor::TYPE_STRING) {
      if (of->is_repeated()) {
        for (int k = 0; k < r->FieldSize(twin, tf); ++k) {
          if (!IsUtf8(r->GetRepeatedString(twin, tf, k))) {
            return name + "[" + std::to_string(k) + "]";
          }
        }
      } else if (!IsUtf8(r->GetString(twin, tf))) {
        return name;
      }
    } else if (of->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      if (of->is_repeated()) {
        for (int k = 0; k < r->FieldSize(twin, tf); ++k) {
          std::string bad = FindBadUtf8(r->GetRepeatedMessage(twin, tf, k), of->message_type(),
                                        name + "[" + std::to_string(k) + "].");
          if (!bad.empty()) return bad;
        }
      } else if (r->HasField(twin, tf)) {
        std::string bad = FindBadUtf8(r->GetMessage(twin, tf), of->message_type(), name + ".");
        if (!bad.empty()) return bad;
      }
    }
  }
  return "";
}

}  // namespace

Status ParseRequestMessage(std::string_view bytes, pb::Message* out) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgument("request: {} bytes is past protobuf's 2 GiB limit", bytes.size());
  }
  if (out->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return Status::Ok();
  const pb::Descriptor* type = out->GetDescriptor();
  out->Clear();
  const pb::Descriptor* twin_type = Twins().Twin(type);
  if (twin_type != nullptr) {
    std::unique_ptr<pb::Message> twin(Twins().factory()->GetPrototype(twin_type)->New());
    if (twin->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      std::string field = FindBadUtf8(*twin, type, "");
      if (!field.empty()) return InvalidArgument("{}: not valid UTF-8", field);
    }
  }
  return InvalidArgument("request: not a valid {} message ({} bytes)", type->full_name(),
                         bytes.size());
}

Status ParseRequestMessage(const grpc::ByteBuffer& bytes, pb::Message* out) {
  grpc::Slice slice;
  if (!bytes.DumpToSingleSlice(&slice).ok()) {
    return InvalidArgument("request: unreadable {} message", out->GetDescriptor()->full_name());
  }
  return ParseRequestMessage(
      std::string_view(reinterpret_cast<const char*>(slice.begin()), slice.size()), out);
}

}  // namespace ite
