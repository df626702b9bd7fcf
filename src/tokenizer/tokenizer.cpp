#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>

#include "formats/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::tokenizer {

void SpDeleter::operator()(sentencepiece::SentencePieceProcessor* p) const { delete p; }

int32_t TokenizerState::model_size() const { return sp ? int32_t(sp->GetPieceSize()) : model.size(); }

std::string TokenizerState::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size) return "";
  auto it = added_content.find(id);
  if (it != added_content.end()) return it->second;
  if (id >= model_size()) return "";
  return sp ? sp->IdToPiece(id) : model.piece(id);
}

void TokenizerState::add_added_token(const AddedToken& t) {
  if (t.id < 0 || t.content.empty()) return;
  if (added_content.count(t.id)) return;  // first definition wins
  added_content[t.id] = t.content;
  added_ids.emplace(t.content, t.id);
  if (t.normalized && !normalizer.empty()) {
    AddedToken n = t;
    n.content = normalizer.apply(t.content);
    if (!n.content.empty()) norm_added.add(n);
  } else {
    raw_added.add(t);
  }
  if (t.id >= int32_t(flags.size())) flags.resize(size_t(t.id) + 1, 0);
  if (t.special) flags[size_t(t.id)] |= kSpecial | kControl;
}

void TokenizerState::finish() {
  vocab_size = model_size();
  for (auto& [id, content] : added_content) vocab_size = std::max(vocab_size, id + 1);
  flags.resize(size_t(vocab_size), 0);
  if (decode.byte_fallback && !sp) {
    for (int b = 0; b < 256; ++b)
      if (model.byte_token(uint8_t(b)) >= 0) flags[size_t(model.byte_token(uint8_t(b)))] |= kByte;
  }
}

void TokenizerState::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (sp) {
    std::vector<int> ids;
    auto st = sp->Encode(text, &ids);
    if (!st.ok()) throw Error(ErrorKind::Internal, origin + ": sentencepiece encode failed: " + st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  std::string norm = normalizer.empty() ? std::string(text) : normalizer.apply(text);
  std::vector<AddedTokenMatcher::Segment> segs;
  if (norm_added.empty()) segs.push_back({0, norm.size(), -1});
  else norm_added.split(norm, segs);
  std::vector<Piece> pieces;
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    std::string_view sub(norm.data() + seg.begin, seg.end - seg.begin);
    if (pre.empty()) {
      model.encode_word(sub, out);
      continue;
    }
    if (pre.spans_only()) {
      pre.for_each_span(sub, [&](size_t b, size_t e) { model.encode_word(sub.substr(b, e - b), out); });
      continue;
    }
    pieces.clear();
    pre.run(sub, at_start && seg.begin == 0, pieces);
    for (const Piece& p : pieces) model.encode_word(p.text, out);
  }
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerState> s) : s_(std::move(s)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::string clean;
  if (!utf8_valid(text)) {
    clean = utf8_sanitize(text);
    text = clean;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out = s_->prefix_ids;
  if (s_->raw_added.empty()) {
    s_->encode_text(text, true, out);
  } else {
    std::vector<AddedTokenMatcher::Segment> segs;
    s_->raw_added.split(text, segs);
    for (const auto& seg : segs) {
      if (seg.id >= 0) out.push_back(seg.id);
      else s_->encode_text(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, out);
    }
  }
  if (add_special) out.insert(out.end(), s_->suffix_ids.begin(), s_->suffix_ids.end());
  return out;
}

std::string Tokenizer::token_to_bytes(int32_t id) const {
  if (id < 0 || id >= s_->vocab_size) return "";
  uint8_t f = s_->flags[size_t(id)];
  if (s_->sp && id < s_->model_size() && !s_->added_content.count(id)) {
    if (s_->sp->IsByte(id)) {
      std::string p = s_->sp->IdToPiece(id);
      return p.size() == 6 ? std::string(1, char(std::stoi(p.substr(3, 2), nullptr, 16))) : p;
    }
  }
  std::string p = s_->piece(id);
  if (f & kRawDecode) return p;
  const DecodeSpec& d = s_->decode;
  if (d.byte_level) {
    std::string raw;
    return byte_level_to_bytes(p, raw) ? raw : p;
  }
  if ((f & kByte) && p.size() == 6) return std::string(1, char(std::stoi(p.substr(3, 2), nullptr, 16)));
  for (const auto& [from, to] : d.replacements) {
    if (from.empty()) continue;
    for (size_t pos = 0; (pos = p.find(from, pos)) != std::string::npos; pos += to.size()) p.replace(pos, from.size(), to);
  }
  return p;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    bytes += token_to_bytes(id);
  }
  int strip = s_->decode.strip_start;
  size_t b = 0;
  while (strip-- > 0 && b < bytes.size() && bytes[b] == ' ') ++b;
  return utf8_sanitize(std::string_view(bytes).substr(b));
}

std::string Tokenizer::token_piece(int32_t id) const { return s_->piece(id); }
int32_t Tokenizer::vocab_size() const { return s_->vocab_size; }
int Tokenizer::strip_leading_spaces() const { return s_->decode.strip_start; }
const TokenizerInfo& Tokenizer::info() const { return s_->info; }

std::optional<int32_t> Tokenizer::token_id(std::string_view piece) const {
  auto it = s_->added_ids.find(piece);
  if (it != s_->added_ids.end()) return it->second;
  if (s_->sp) {
    int id = s_->sp->PieceToId(piece);
    if (id == s_->sp->unk_id() && s_->sp->IdToPiece(id) != piece) return std::nullopt;
    return id;
  }
  return s_->model.find(piece);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < s_->vocab_size && (s_->flags[size_t(id)] & kSpecial);
}
bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < s_->vocab_size && (s_->flags[size_t(id)] & kControl);
}

// ---- factories ----

static std::unique_ptr<Tokenizer> finish_and_make(std::unique_ptr<TokenizerState> s) {
  s->finish();
  resolve_special_ids(*s);
  return TokenizerBuilder::make(std::move(s));
}

std::unique_ptr<Tokenizer> Tokenizer::from_tokenizer_json(const std::string& json_text,
                                                          const std::string& config_text,
                                                          const std::string& origin) {
  auto s = load_tokenizer_json(json_text, origin);
  if (!config_text.empty()) apply_tokenizer_config(*s, config_text, origin + " (tokenizer_config.json)");
  return finish_and_make(std::move(s));
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const formats::GgufFile& f) {
  return finish_and_make(load_gguf_vocab(f));
}

std::unique_ptr<Tokenizer> Tokenizer::from_sentencepiece(const std::string& model_path,
                                                         const std::string& config_text) {
  auto s = load_sentencepiece(model_path);
  if (!config_text.empty()) apply_tokenizer_config(*s, config_text, model_path + " (tokenizer_config.json)");
  return finish_and_make(std::move(s));
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string json_path = dir + "/tokenizer.json";
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string config = file_exists(config_path) ? read_text_file(config_path) : "";
  std::unique_ptr<Tokenizer> t;
  if (file_exists(json_path)) {
    auto s = load_tokenizer_json(read_text_file(json_path), json_path);
    if (!config.empty()) apply_tokenizer_config(*s, config, config_path);
    t = finish_and_make(std::move(s));
  } else if (file_exists(dir + "/tokenizer.model")) {
    t = from_sentencepiece(dir + "/tokenizer.model", config);
  } else {
    throw Error(ErrorKind::NotFound, dir + ": no tokenizer.json or tokenizer.model");
  }
  TokenizerInfo& info = t->s_->info;
  if (file_exists(dir + "/chat_template.jinja")) {
    info.chat_template = read_text_file(dir + "/chat_template.jinja");
    info.chat_templates["default"] = info.chat_template;
  }
  std::error_code ec;
  const std::string extra = dir + "/additional_chat_templates";
  if (is_directory(extra)) {
    for (const auto& e : fs::directory_iterator(extra, ec)) {
      if (e.path().extension() == ".jinja") info.chat_templates[e.path().stem().string()] = read_text_file(e.path().string());
    }
  }
  return t;
}

}  // namespace optiq::tokenizer
