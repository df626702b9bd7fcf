// SentencePiece tokenizer.model files through libsentencepiece.
#include <sentencepiece_processor.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::tokenizer {

std::unique_ptr<TokenizerState> load_sentencepiece(const std::string& model_path) {
  auto s = std::make_unique<TokenizerState>();
  s->origin = model_path;
  s->info.source = "sentencepiece";
  if (!file_exists(model_path)) throw Error(ErrorKind::NotFound, model_path + ": file not found");
  s->sp.reset(new sentencepiece::SentencePieceProcessor());
  auto st = s->sp->Load(model_path);
  if (!st.ok()) throw Error(ErrorKind::BadModel, model_path + ": not a SentencePiece model: " + st.ToString());
  const auto& sp = *s->sp;
  const int n = sp.GetPieceSize();
  s->flags.assign(size_t(n), 0);
  for (int i = 0; i < n; ++i) {
    if (sp.IsControl(i) || sp.IsUnknown(i)) {
      // matched as whole tokens in the text (like the HF slow tokenizer's special tokens);
      // user-defined pieces are matched by SentencePiece itself
      AddedToken t{sp.IdToPiece(i), i, false, false, false, false, true};
      if (!t.content.empty()) {
        s->raw_added.add(t);
        s->added_ids.emplace(t.content, i);
      }
    }
    if (sp.IsControl(i)) s->flags[size_t(i)] |= kSpecial | kControl;
    if (sp.IsUnknown(i)) s->flags[size_t(i)] |= kSpecial;
    if (sp.IsByte(i)) s->flags[size_t(i)] |= kByte;
  }
  s->decode.replacements.emplace_back("\xE2\x96\x81", " ");
  s->decode.byte_fallback = true;
  s->decode.strip_start = 1;
  TokenizerInfo& info = s->info;
  auto set = [&](int id, std::optional<int32_t>& out, std::string& name) {
    if (id >= 0 && id < n) {
      out = id;
      name = sp.IdToPiece(id);
    }
  };
  set(sp.bos_id(), info.bos_id, info.bos_token);
  set(sp.eos_id(), info.eos_id, info.eos_token);
  set(sp.pad_id(), info.pad_id, info.pad_token);
  set(sp.unk_id(), info.unk_id, info.unk_token);
  if (info.bos_id) s->prefix_ids.push_back(*info.bos_id);  // LlamaTokenizer default; config may override
  return s;
}

}  // namespace optiq::tokenizer
