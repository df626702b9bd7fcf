// tokenizer.json and tokenizer_config.json (HF tokenizers format).
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace optiq::tokenizer {

using json = nlohmann::json;

namespace {

const char* kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* kPunctRegex = "[\\p{P}!-/:-@\\[-`{-~]";

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw Error(ErrorKind::BadModel, origin + ": " + what);
}
[[noreturn]] void unsupported(const std::string& origin, const std::string& what) {
  throw Error(ErrorKind::Unsupported, origin + ": " + what);
}

json parse_json(const std::string& text, const std::string& origin) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) bad(origin, "not a valid JSON object");
  return j;
}

// tokenizer.json is parsed with a SAX handler that keeps model.vocab and model.merges out of the
// DOM (a 150k-entry std::map costs more than the rest of loading together).
struct BigParts {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false, has_merges = false;
  std::string error;
};

class TokenizerJsonSax {
 public:
  TokenizerJsonSax(json& result, BigParts& parts) : dom_(result, false), parts_(parts) {}

  bool null() { return mode_ == Mode::Normal ? dom_.null() : fail("unexpected null"); }
  bool boolean(bool v) { return mode_ == Mode::Normal ? dom_.boolean(v) : fail("unexpected boolean"); }
  bool number_integer(json::number_integer_t v) { return mode_ == Mode::Vocab ? add_vocab(v) : normal_only(dom_.number_integer(v)); }
  bool number_unsigned(json::number_unsigned_t v) {
    return mode_ == Mode::Vocab ? add_vocab(int64_t(v)) : normal_only(dom_.number_unsigned(v));
  }
  bool number_float(json::number_float_t v, const std::string& s) { return normal_only(dom_.number_float(v, s)); }
  bool string(std::string& v) {
    if (mode_ == Mode::Normal) return dom_.string(v);
    if (mode_ == Mode::Merges) {
      size_t sp = v.find(' ', 1);
      if (sp == std::string::npos) return fail("merge '" + v + "' is not 'a b'");
      parts_.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::MergePair) {
      pair_.push_back(std::move(v));
      return true;
    }
    return fail("unexpected string in model.vocab");
  }
  bool binary(json::binary_t& v) { return normal_only(dom_.binary(v)); }
  bool start_object(std::size_t n) {
    if (mode_ != Mode::Normal) return fail("unexpected object");
    if (at_model_key("vocab")) {
      mode_ = Mode::Vocab;
      parts_.has_vocab = true;
      return dom_.null();
    }
    stack_.push_back(Frame{true, ""});
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    if (mode_ == Mode::Vocab) {
      key_ = std::move(k);
      return true;
    }
    if (mode_ != Mode::Normal) return fail("unexpected key");
    if (!stack_.empty()) stack_.back().key = k;
    return dom_.key(k);
  }
  bool end_object() {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Normal;
      return true;
    }
    if (mode_ != Mode::Normal) return fail("unexpected end of object");
    if (!stack_.empty()) stack_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::Normal) return fail("unexpected array");
    if (at_model_key("merges")) {
      mode_ = Mode::Merges;
      parts_.has_merges = true;
      return dom_.null();
    }
    stack_.push_back(Frame{false, ""});
    return dom_.start_array(n);
  }
  bool end_array() {
    if (mode_ == Mode::MergePair) {
      if (pair_.size() != 2) return fail("a merge is not a pair [a, b]");
      parts_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::Merges;
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::Normal;
      return true;
    }
    if (mode_ != Mode::Normal) return fail("unexpected end of array");
    if (!stack_.empty()) stack_.pop_back();
    return dom_.end_array();
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) {
    parts_.error = "at byte " + std::to_string(pos) + ": " + e.what();
    return false;
  }

 private:
  enum class Mode { Normal, Vocab, Merges, MergePair };
  struct Frame {
    bool object;
    std::string key;
  };
  bool at_model_key(const char* k) const {
    return stack_.size() == 2 && stack_[0].object && stack_[0].key == "model" && stack_[1].object && stack_[1].key == k;
  }
  bool add_vocab(int64_t id) {
    parts_.vocab.emplace_back(std::move(key_), id);
    return true;
  }
  bool normal_only(bool r) { return mode_ == Mode::Normal ? r : fail("unexpected value"); }
  bool fail(const std::string& what) {
    if (parts_.error.empty()) parts_.error = what;
    return false;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  BigParts& parts_;
  Mode mode_ = Mode::Normal;
  std::vector<Frame> stack_;
  std::string key_;
  std::vector<std::string> pair_;
};

std::string type_of(const json& j) { return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : ""; }

// A string field (missing / null -> def).
std::string str_field(const json& j, const char* key, const std::string& def = "") {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return def;
  return j[key].get<std::string>();
}
bool bool_field(const json& j, const char* key, bool def) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return def;
  return j[key].get<bool>();
}

// {"String": s} or {"Regex": r}
std::shared_ptr<Regex> pattern_regex(const json& p, const std::string& origin) {
  if (p.is_object() && p.contains("Regex")) return get_regex(p["Regex"].get<std::string>(), false, origin);
  if (p.is_object() && p.contains("String")) return get_regex(p["String"].get<std::string>(), true, origin);
  bad(origin, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

void parse_normalizer(const json& j, Normalizer& n, const std::string& origin) {
  if (j.is_null()) return;
  std::string t = type_of(j);
  NormOp op;
  if (t == "Sequence") {
    for (const json& sub : j.at("normalizers")) parse_normalizer(sub, n, origin);
    return;
  } else if (t == "NFC") op.kind = NormOp::Kind::NFC;
  else if (t == "NFD") op.kind = NormOp::Kind::NFD;
  else if (t == "NFKC") op.kind = NormOp::Kind::NFKC;
  else if (t == "NFKD") op.kind = NormOp::Kind::NFKD;
  else if (t == "Lowercase") op.kind = NormOp::Kind::Lowercase;
  else if (t == "StripAccents") op.kind = NormOp::Kind::StripAccents;
  else if (t == "Prepend") op.kind = NormOp::Kind::Prepend, op.text = j.at("prepend").get<std::string>();
  else if (t == "Strip") {
    op.kind = NormOp::Kind::Strip;
    op.left = bool_field(j, "strip_left", true);
    op.right = bool_field(j, "strip_right", true);
  } else if (t == "Replace") {
    op.kind = NormOp::Kind::Replace;
    const json& p = j.at("pattern");
    if (p.contains("String")) op.text = p["String"].get<std::string>();
    else op.re = pattern_regex(p, origin);
    op.content = j.at("content").get<std::string>();
  } else {
    unsupported(origin, "normalizer type '" + t + "' is not supported");
  }
  n.add(std::move(op));
}

SplitBehavior parse_behavior(const std::string& b, const std::string& origin) {
  std::string s;
  for (char c : b) s += char(std::tolower(uint8_t(c)));
  if (s == "removed") return SplitBehavior::Removed;
  if (s == "isolated") return SplitBehavior::Isolated;
  if (s == "mergedwithprevious") return SplitBehavior::MergedWithPrevious;
  if (s == "mergedwithnext") return SplitBehavior::MergedWithNext;
  if (s == "contiguous") return SplitBehavior::Contiguous;
  bad(origin, "unknown split behavior '" + b + "'");
}

void add_split(PreTokenizer& pre, const std::string& pattern, SplitBehavior b, bool invert, const std::string& origin) {
  PreOp op;
  op.kind = PreOp::Kind::Split;
  op.re = get_regex(pattern, false, origin);
  op.behavior = b;
  op.invert = invert;
  pre.add(std::move(op));
}

bool parse_pre_tokenizer(const json& j, PreTokenizer& pre, const std::string& origin) {
  if (j.is_null()) return false;
  std::string t = type_of(j);
  bool byte_level = false;
  if (t == "Sequence") {
    for (const json& sub : j.at("pretokenizers")) byte_level |= parse_pre_tokenizer(sub, pre, origin);
  } else if (t == "Split") {
    PreOp op;
    op.re = pattern_regex(j.at("pattern"), origin);
    op.behavior = parse_behavior(str_field(j, "behavior", "Isolated"), origin);
    op.invert = bool_field(j, "invert", false);
    pre.add(std::move(op));
  } else if (t == "ByteLevel") {
    PreOp op;
    op.kind = PreOp::Kind::ByteLevel;
    op.add_prefix_space = bool_field(j, "add_prefix_space", true);
    if (bool_field(j, "use_regex", true)) op.re = get_regex(kGpt2Regex, false, origin);
    pre.add(std::move(op));
    byte_level = true;
  } else if (t == "Metaspace") {
    PreOp op;
    op.kind = PreOp::Kind::Metaspace;
    op.replacement = str_field(j, "replacement", "\xE2\x96\x81");
    std::string scheme = str_field(j, "prepend_scheme", bool_field(j, "add_prefix_space", true) ? "always" : "never");
    op.prepend = scheme == "first" ? PreOp::Prepend::First : scheme == "never" ? PreOp::Prepend::Never : PreOp::Prepend::Always;
    op.split = bool_field(j, "split", true);
    pre.add(std::move(op));
  } else if (t == "Whitespace") {
    add_split(pre, "\\w+|[^\\w\\s]+", SplitBehavior::Removed, true, origin);
  } else if (t == "WhitespaceSplit") {
    add_split(pre, "\\s+", SplitBehavior::Removed, false, origin);
  } else if (t == "Digits") {
    add_split(pre, bool_field(j, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", SplitBehavior::Isolated, false, origin);
  } else if (t == "Punctuation") {
    add_split(pre, kPunctRegex, parse_behavior(str_field(j, "behavior", "Isolated"), origin), false, origin);
  } else if (t == "BertPreTokenizer") {
    add_split(pre, "\\s+", SplitBehavior::Removed, false, origin);
    add_split(pre, kPunctRegex, SplitBehavior::Isolated, false, origin);
  } else {
    unsupported(origin, "pre_tokenizer type '" + t + "' is not supported");
  }
  return byte_level;
}

void parse_post_processor(const json& j, TokenizerState& s, const std::string& origin) {
  if (j.is_null()) return;
  std::string t = type_of(j);
  if (t == "Sequence") {
    for (const json& sub : j.at("processors")) parse_post_processor(sub, s, origin);
  } else if (t == "ByteLevel") {
    // offsets only
  } else if (t == "TemplateProcessing") {
    const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json::object();
    bool seen_seq = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_seq = true;
      } else if (item.contains("SpecialToken")) {
        std::string name = item["SpecialToken"].at("id").get<std::string>();
        if (!specials.contains(name)) bad(origin, "post_processor uses undefined special token '" + name + "'");
        for (const json& id : specials[name].at("ids")) (seen_seq ? s.suffix_ids : s.prefix_ids).push_back(id.get<int32_t>());
      }
    }
  } else if (t == "RobertaProcessing" || t == "BertProcessing") {
    s.prefix_ids.push_back(j.at("cls").at(1).get<int32_t>());
    s.suffix_ids.push_back(j.at("sep").at(1).get<int32_t>());
  } else {
    unsupported(origin, "post_processor type '" + t + "' is not supported");
  }
}

void parse_decoder(const json& j, DecodeSpec& d, const std::string& origin) {
  if (j.is_null()) return;
  std::string t = type_of(j);
  if (t == "Sequence") {
    for (const json& sub : j.at("decoders")) parse_decoder(sub, d, origin);
  } else if (t == "ByteLevel") {
    d.byte_level = true;
  } else if (t == "ByteFallback") {
    d.byte_fallback = true;
  } else if (t == "Fuse") {
  } else if (t == "Replace") {
    const json& p = j.at("pattern");
    if (!p.contains("String")) unsupported(origin, "Replace decoder with a regex pattern is not supported");
    d.replacements.emplace_back(p["String"].get<std::string>(), j.at("content").get<std::string>());
  } else if (t == "Strip") {
    if (str_field(j, "content", " ") == " ") d.strip_start = j.value("start", 0);
  } else if (t == "Metaspace") {
    d.replacements.emplace_back(str_field(j, "replacement", "\xE2\x96\x81"), " ");
    std::string scheme = str_field(j, "prepend_scheme", bool_field(j, "add_prefix_space", true) ? "always" : "never");
    if (scheme != "never") d.strip_start = 1;
  } else {
    unsupported(origin, "decoder type '" + t + "' is not supported");
  }
}

std::string token_name(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

AddedToken parse_added(const json& a, int32_t id) {
  AddedToken t;
  t.id = id;
  t.content = a.at("content").get<std::string>();
  t.single_word = bool_field(a, "single_word", false);
  t.lstrip = bool_field(a, "lstrip", false);
  t.rstrip = bool_field(a, "rstrip", false);
  t.normalized = bool_field(a, "normalized", false);
  t.special = bool_field(a, "special", false);
  return t;
}

void load_model(const json& m, BigParts& big, TokenizerState& s, const std::string& origin) {
  std::string t = type_of(m);
  if (t.empty() && big.has_merges) t = "BPE";
  if (t != "BPE") unsupported(origin, "model type '" + t + "' is not supported (only BPE)");
  if (!big.has_vocab || !big.has_merges) bad(origin, "model.vocab must be an object and model.merges a list");
  if (!str_field(m, "continuing_subword_prefix").empty() || !str_field(m, "end_of_word_suffix").empty())
    unsupported(origin, "BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  std::vector<std::string> pieces;
  for (auto& [piece, id] : big.vocab) {
    if (id < 0 || id > 10'000'000) bad(origin, "vocab id out of range for '" + piece + "'");
    if (size_t(id) >= pieces.size()) pieces.resize(size_t(id) + 1);
    pieces[size_t(id)] = std::move(piece);
  }
  big.vocab.clear();
  s.model.set_vocab(std::move(pieces));
  for (size_t n = 0; n < big.merges.size(); ++n) {
    const auto& [a, b] = big.merges[n];
    if (!s.model.add_merge(a, b)) bad(origin, "merge #" + std::to_string(n) + " ('" + a + "', '" + b + "') uses a token not in the vocab");
  }
  big.merges.clear();
  s.model.byte_fallback = bool_field(m, "byte_fallback", false);
  s.model.ignore_merges = bool_field(m, "ignore_merges", false);
  s.model.fuse_unk = bool_field(m, "fuse_unk", false);
  std::string unk = str_field(m, "unk_token");
  if (!unk.empty()) {
    s.model.unk_id = s.model.find(unk);
    s.info.unk_token = unk;
  }
}

}  // namespace

std::unique_ptr<TokenizerState> load_tokenizer_json(const std::string& json_text, const std::string& origin) {
  auto s = std::make_unique<TokenizerState>();
  s->origin = origin;
  s->info.source = "tokenizer.json";
  try {
    json j;
    BigParts big;
    TokenizerJsonSax sax(j, big);
    bool ok = json::sax_parse(json_text, &sax, json::input_format_t::json, true);
    if (!ok || !j.is_object()) bad(origin, "not a valid tokenizer.json" + (big.error.empty() ? "" : " (" + big.error + ")"));
    if (!j.contains("model")) bad(origin, "no \"model\"");
    load_model(j["model"], big, *s, origin);
    if (j.contains("normalizer")) parse_normalizer(j["normalizer"], s->normalizer, origin);
    if (j.contains("pre_tokenizer")) s->model.byte_level = parse_pre_tokenizer(j["pre_tokenizer"], s->pre, origin);
    s->model.finalize();
    if (j.contains("added_tokens") && !j["added_tokens"].is_null())
      for (const json& a : j["added_tokens"]) s->add_added_token(parse_added(a, a.at("id").get<int32_t>()));
    if (j.contains("post_processor")) parse_post_processor(j["post_processor"], *s, origin);
    if (j.contains("decoder")) parse_decoder(j["decoder"], s->decode, origin);
  } catch (const json::exception& e) {
    bad(origin, std::string("malformed tokenizer.json: ") + e.what());
  }
  return s;
}

void apply_tokenizer_config(TokenizerState& s, const std::string& config_text, const std::string& origin) {
  try {
    json c = parse_json(config_text, origin);
    TokenizerInfo& info = s.info;
    if (c.contains("bos_token")) info.bos_token = token_name(c["bos_token"]);
    if (c.contains("eos_token")) info.eos_token = token_name(c["eos_token"]);
    if (c.contains("pad_token")) info.pad_token = token_name(c["pad_token"]);
    if (c.contains("unk_token") && !token_name(c["unk_token"]).empty()) info.unk_token = token_name(c["unk_token"]);
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) s.cfg_add_bos = c["add_bos_token"].get<bool>();
    if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) s.cfg_add_eos = c["add_eos_token"].get<bool>();
    if (c.contains("chat_template")) {
      const json& ct = c["chat_template"];
      if (ct.is_string()) {
        info.chat_templates["default"] = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const json& e : ct) info.chat_templates[e.at("name").get<std::string>()] = e.at("template").get<std::string>();
      }
      auto it = info.chat_templates.find("default");
      if (it != info.chat_templates.end()) info.chat_template = it->second;
      else if (!info.chat_templates.empty()) info.chat_template = info.chat_templates.begin()->second;
    }
    if (c.contains("added_tokens_decoder") && c["added_tokens_decoder"].is_object()) {
      for (auto it = c["added_tokens_decoder"].begin(); it != c["added_tokens_decoder"].end(); ++it) {
        int32_t id = std::stoi(it.key());
        s.add_added_token(parse_added(it.value(), id));
      }
    }
  } catch (const json::exception& e) {
    bad(origin, std::string("malformed tokenizer_config.json: ") + e.what());
  } catch (const std::logic_error& e) {  // stoi
    bad(origin, std::string("malformed tokenizer_config.json: ") + e.what());
  }
}

void resolve_special_ids(TokenizerState& s) {
  TokenizerInfo& info = s.info;
  auto lookup = [&](const std::string& name) -> std::optional<int32_t> {
    if (name.empty()) return std::nullopt;
    auto it = s.added_ids.find(name);
    if (it != s.added_ids.end()) return it->second;
    if (s.sp) return std::nullopt;  // handled by the SentencePiece loader
    return s.model.find(name);
  };
  if (auto id = lookup(info.bos_token)) info.bos_id = id;
  if (auto id = lookup(info.eos_token)) info.eos_id = id;
  if (auto id = lookup(info.pad_token)) info.pad_id = id;
  if (auto id = lookup(info.unk_token)) info.unk_id = id;
  if (s.cfg_add_bos) {
    bool has = info.bos_id && !s.prefix_ids.empty() && s.prefix_ids.front() == *info.bos_id;
    if (*s.cfg_add_bos && info.bos_id && !has) s.prefix_ids.insert(s.prefix_ids.begin(), *info.bos_id);
    if (!*s.cfg_add_bos && has) s.prefix_ids.erase(s.prefix_ids.begin());
  }
  if (s.cfg_add_eos) {
    bool has = info.eos_id && !s.suffix_ids.empty() && s.suffix_ids.back() == *info.eos_id;
    if (*s.cfg_add_eos && info.eos_id && !has) s.suffix_ids.push_back(*info.eos_id);
    if (!*s.cfg_add_eos && has) s.suffix_ids.pop_back();
  }
  if (!info.bos_id && !s.prefix_ids.empty()) {
    info.bos_id = s.prefix_ids.front();
    info.bos_token = s.piece(*info.bos_id);
  }
  info.add_bos = !s.prefix_ids.empty();
  info.add_eos = !s.suffix_ids.empty();
  for (int32_t id : s.prefix_ids)
    if (id < 0 || id >= s.vocab_size) throw Error(ErrorKind::BadModel, s.origin + ": post_processor id " + std::to_string(id) + " out of range");
  for (int32_t id : s.suffix_ids)
    if (id < 0 || id >= s.vocab_size) throw Error(ErrorKind::BadModel, s.origin + ": post_processor id " + std::to_string(id) + " out of range");
  if (info.unk_id && *info.unk_id < s.vocab_size) s.flags[size_t(*info.unk_id)] &= uint8_t(~kControl);
}

}  // namespace optiq::tokenizer
