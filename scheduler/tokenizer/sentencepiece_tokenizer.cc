#include "scheduler/tokenizer/sentencepiece_tokenizer.h"

#ifdef ITE_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>

#include "scheduler/tokenizer/added_vocabulary.h"
#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)) {
    std::vector<AddedTokenSpec> specials;
    for (int i = 0; i < sp_->GetPieceSize(); ++i) {
      if (!sp_->IsControl(i) || sp_->IdToPiece(i).empty()) continue;
      AddedTokenSpec a;
      a.id = i;
      a.content = sp_->IdToPiece(i);
      a.special = true;
      specials.push_back(std::move(a));
    }
    control_ = std::make_unique<AddedVocabulary>(specials);
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    const std::string clean = utf8::Sanitize(text);
    std::vector<int32_t> out;
    if (add_special_tokens && sp_->bos_id() >= 0) out.push_back(sp_->bos_id());
    for (const auto& seg : control_->Split(clean, /*normalized=*/false)) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
        continue;
      }
      std::vector<int> ids;
      // Encode only fails on an unloaded model, which Create rules out.
      (void)sp_->Encode(std::string_view(clean).substr(seg.begin, seg.end - seg.begin), &ids);
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    // libsentencepiece renders control ids as nothing; put their text back when asked.
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      (void)sp_->Decode(run, &text);
      out += text;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_->GetPieceSize()) continue;
      if (skip_special_tokens && IsSpecial(id)) continue;
      if (sp_->IsControl(id)) {
        flush();
        out += sp_->IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return utf8::Sanitize(out);
  }

  int32_t vocab_size() const override { return sp_->GetPieceSize(); }
  int32_t bos_id() const override { return sp_->bos_id(); }
  std::vector<int32_t> eos_ids() const override {
    if (sp_->eos_id() < 0) return {};
    return {sp_->eos_id()};
  }
  std::optional<int32_t> TokenToId(std::string_view token) const override {
    const int id = sp_->PieceToId(token);
    // PieceToId answers unk_id for unknown pieces; only the unk piece itself really maps there.
    if (id == sp_->unk_id() && sp_->IdToPiece(id) != token) return std::nullopt;
    return id;
  }
  std::string IdToToken(int32_t id) const override {
    if (id < 0 || id >= sp_->GetPieceSize()) return {};
    return sp_->IdToPiece(id);
  }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < sp_->GetPieceSize() && (sp_->IsControl(id) || sp_->IsUnknown(id));
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::unique_ptr<AddedVocabulary> control_;
};

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::string& path) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    return InvalidArgument("{}: not a SentencePiece model: {}", path, status.ToString());
  }
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(sp)));
}

}  // namespace ite

#else  // Built without libsentencepiece (it is optional on GPU hosts).

namespace ite {
StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::string& path) {
  return Unimplemented("{}: this build has no libsentencepiece; use tokenizer.json or GGUF", path);
}
}  // namespace ite

#endif
