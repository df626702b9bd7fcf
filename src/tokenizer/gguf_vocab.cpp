// GGUF vocabularies: tokenizer.ggml.model "llama" (SentencePiece scores) and "gpt2" (byte-level BPE).
#include <algorithm>
#include <set>

#include "formats/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace optiq::tokenizer {

namespace {

// Pre-tokenizer regexes per tokenizer.ggml.pre family. Each regex splits every piece further;
// matches and the text between them both become pieces (HF Split "Isolated").
const char* kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kCjk = "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+";  // [一-龥ࠀ-一가-퟿]+

struct PreFamily {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

PreFamily pre_family(const std::string& pre, const std::string& origin) {
  static const std::set<std::string> llama3 = {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe",
                                               "chatglm-bpe", "pixtral"};
  static const std::set<std::string> qwen2 = {"qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "stablelm2",
                                              "hunyuan", "grok-2", "megrez"};
  static const std::set<std::string> gpt2 = {"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "mpt", "olmo", "jais",
                                             "roberta-bpe", "trillion", "granite-docling"};
  static const std::set<std::string> starcoder = {"starcoder", "refact", "command-r", "smollm", "codeshell",
                                                  "exaone", "minerva-7b"};
  PreFamily f;
  if (llama3.count(pre)) {
    f.regexes = {kLlama3};
    f.ignore_merges = true;
    f.add_bos = true;
  } else if (qwen2.count(pre)) {
    f.regexes = {kQwen2};
  } else if (gpt2.count(pre)) {
    f.regexes = {kGpt2};
  } else if (starcoder.count(pre)) {
    f.regexes = {"\\p{N}", kGpt2};
  } else if (pre == "falcon") {
    f.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
  } else if (pre == "deepseek-coder") {
    f.regexes = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"};
    f.add_bos = true;
  } else if (pre == "deepseek-llm") {
    f.regexes = {"[\\r\\n]",
                 "\\s?[A-Za-z\xC2\xB5\xC3\x80-\xC3\x96\xC3\x98-\xC3\xB6\xC3\xB8-\xC6\xBA\xC6\xBC-\xC6\xBF\xC7\x84-"
                 "\xCA\x93\xCA\x95-\xCA\xAF\xCD\xB0-\xCD\xB3\xCD\xB6\xCD\xB7\xCD\xBB-\xCD\xBD\xCD\xBF\xCE\x86\xCE\x88-"
                 "\xCE\x8A\xCE\x8C\xCE\x8E-\xCE\xA1\xCE\xA3-\xCF\xB5\xCF\xB7-\xD2\x81\xD2\x8A-\xD4\xAF\xD4\xB1-\xD5\x96"
                 "\xE1\x82\xA0-\xE1\x83\x85\xE1\x8E\xA0-\xE1\x8F\xB5\xE1\x8F\xB8-\xE1\x8F\xBD\xE1\xB2\x90-\xE1\xB2\xBA"
                 "\xE1\xB2\xBD-\xE1\xB2\xBF\xE1\xB4\x80-\xE1\xB4\xAB\xE1\xB5\xAB-\xE1\xB5\xB7\xE1\xB5\xB9-\xE1\xB6\x9A"
                 "\xE1\xB8\x80-\xE1\xBC\x95\xE1\xBC\x98-\xE1\xBC\x9D\xE1\xBC\xA0-\xE1\xBD\x85\xE1\xBD\x88-\xE1\xBD\x8D"
                 "\xE1\xBD\x90-\xE1\xBD\x97\xE1\xBD\x99\xE1\xBD\x9B\xE1\xBD\x9D\xE1\xBD\x9F-\xE1\xBD\xBD\xE1\xBE\x80-"
                 "\xE1\xBE\xB4\xE1\xBE\xB6-\xE1\xBE\xBC\xE1\xBE\xBE\xE1\xBF\x82-\xE1\xBF\x84\xE1\xBF\x86-\xE1\xBF\x8C"
                 "\xE1\xBF\x90-\xE1\xBF\x93\xE1\xBF\x96-\xE1\xBF\x9B\xE1\xBF\xA0-\xE1\xBF\xAC\xE1\xBF\xB2-\xE1\xBF\xB4"
                 "\xE1\xBF\xB6-\xE1\xBF\xBC\xE2\x84\x82\xE2\x84\x87\xE2\x84\x8A-\xE2\x84\x93\xE2\x84\x95\xE2\x84\x99-"
                 "\xE2\x84\x9D\xE2\x84\xA4\xE2\x84\xA6\xE2\x84\xA8\xE2\x84\xAA-\xE2\x84\xAD\xE2\x84\xAF-\xE2\x84\xB4"
                 "\xE2\x84\xB9\xE2\x84\xBC-\xE2\x84\xBF\xE2\x85\x85-\xE2\x85\x89\xE2\x85\x8E\xE2\x86\x83\xE2\x86\x84"
                 "\xE2\xB0\x80-\xE2\xB1\xBB\xE2\xB1\xBE-\xE2\xB3\xA4\xE2\xB3\xAB-\xE2\xB3\xAE\xE2\xB3\xB2\xE2\xB3\xB3"
                 "\xEA\x99\x80-\xEA\x99\xAD\xEA\x9A\x80-\xEA\x9A\x9B\xEA\x9C\xA2-\xEA\x9D\xAF\xEA\x9D\xB1-\xEA\x9E\x87"
                 "\xEA\x9E\x8B-\xEA\x9E\x8E\xEA\xAD\xB0-\xEA\xAE\xBF\xEF\xAC\x80-\xEF\xAC\x86\xEF\xAC\x93-\xEF\xAC\x97"
                 "\xEF\xBC\xA1-\xEF\xBC\xBA\xEF\xBD\x81-\xEF\xBD\x9A\xF0\x90\x90\x80-\xF0\x90\x91\x8F\xF0\x90\x92\xB0-"
                 "\xF0\x90\x93\x93\xF0\x90\x93\x98-\xF0\x90\x93\xBB\xF0\x90\xB2\x80-\xF0\x90\xB2\xB2\xF0\x90\xB3\x80-"
                 "\xF0\x90\xB3\xB2\xF0\x91\xA2\xA0-\xF0\x91\xA3\x9F\xF0\x9E\xA4\x80-\xF0\x9E\xA5\x83]+",
                 "\\s?[!-/:-~\xEF\xBC\x81-\xEF\xBC\x8F\xEF\xBC\x9A-\xEF\xBD\x9E\xE2\x80\x98-\xE2\x80\x9F\xE3\x80\x80-"
                 "\xE3\x80\x82]+",
                 "\\s+$", kCjk, "\\p{N}+"};
    f.add_bos = true;
  } else if (pre == "default" || pre.empty()) {
    f.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else {
    throw Error(ErrorKind::Unsupported, origin + ": tokenizer.ggml.pre '" + pre + "' is not supported");
  }
  return f;
}

enum TokenType { kNormal = 1, kUnknown = 2, kControlType = 3, kUserDefined = 4, kUnused = 5, kByteType = 6 };

}  // namespace

std::unique_ptr<TokenizerState> load_gguf_vocab(const formats::GgufFile& f) {
  const std::string origin = f.path();
  auto s = std::make_unique<TokenizerState>();
  s->origin = origin;
  const std::string model = f.get_string("tokenizer.ggml.model");
  const std::string pre = f.get_string("tokenizer.ggml.pre");
  if (model != "llama" && model != "gpt2") {
    if (f.has("tokenizer.huggingface.json")) {
      auto st = load_tokenizer_json(f.get_string("tokenizer.huggingface.json"), origin + " (tokenizer.huggingface.json)");
      s = std::move(st);
    } else {
      throw Error(ErrorKind::Unsupported, origin + ": tokenizer.ggml.model '" + model + "' is not supported");
    }
  } else {
    s->info.source = "gguf:" + model;
    std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (tokens.empty()) throw Error(ErrorKind::BadModel, origin + ": tokenizer.ggml.tokens is missing or empty");
    std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
    if (!types.empty() && types.size() != tokens.size())
      throw Error(ErrorKind::BadModel, origin + ": tokenizer.ggml.token_type has a different length than the tokens");
    types.resize(tokens.size(), kNormal);
    const size_t n = tokens.size();
    std::vector<AddedToken> added;
    for (size_t i = 0; i < n; ++i) {
      int64_t t = types[i];
      if ((t == kControlType || t == kUserDefined || t == kUnknown) && !tokens[i].empty())
        added.push_back(AddedToken{tokens[i], int32_t(i), false, false, false, false, t != kUserDefined});
    }
    s->model.set_vocab(tokens);
    bool add_bos = false;
    if (model == "llama") {
      std::vector<float> scores = f.get_float_array("tokenizer.ggml.scores");
      if (!scores.empty() && scores.size() != n)
        throw Error(ErrorKind::BadModel, origin + ": tokenizer.ggml.scores has a different length than the tokens");
      s->model.set_scores(std::move(scores));
      s->model.byte_fallback = true;
      if (f.get_bool("tokenizer.ggml.add_space_prefix", true)) {
        s->normalizer.add(NormOp{NormOp::Kind::Prepend, "\xE2\x96\x81", "", nullptr});
        s->decode.strip_start = 1;
      }
      s->normalizer.add(NormOp{NormOp::Kind::Replace, " ", "\xE2\x96\x81", nullptr});
      s->decode.replacements.emplace_back("\xE2\x96\x81", " ");
      s->decode.byte_fallback = true;
      add_bos = true;
    } else {
      const auto* merges = f.find("tokenizer.ggml.merges");
      if (!merges || merges->type != formats::GgufType::Array)
        throw Error(ErrorKind::BadModel, origin + ": tokenizer.ggml.merges is missing");
      for (const auto& m : merges->arr) {
        size_t sp = m.s.find(' ', 1);
        if (sp == std::string::npos) continue;
        s->model.add_merge(std::string_view(m.s).substr(0, sp), std::string_view(m.s).substr(sp + 1));
      }
      PreFamily fam = pre_family(pre, origin);
      for (const std::string& re : fam.regexes) {
        PreOp op;
        op.re = get_regex(re, false, origin);
        s->pre.add(std::move(op));
      }
      PreOp bl;
      bl.kind = PreOp::Kind::ByteLevel;
      s->pre.add(std::move(bl));
      s->model.byte_level = true;
      s->model.ignore_merges = fam.ignore_merges;
      s->decode.byte_level = true;
      add_bos = fam.add_bos;
    }
    s->model.finalize();
    for (const AddedToken& t : added) s->add_added_token(t);
    s->finish();
    for (size_t i = 0; i < n; ++i) {
      int64_t t = types[i];
      if (t == kControlType) s->flags[i] |= kSpecial | kControl | kRawDecode;
      else if (t == kUnknown) s->flags[i] |= kSpecial | kRawDecode;
      else if (t == kUserDefined) s->flags[i] = uint8_t((s->flags[i] & ~(kSpecial | kControl)) | kRawDecode);
      else if (t == kByteType) s->flags[i] |= kByte;
    }
    auto id_key = [&](const char* key) -> std::optional<int32_t> {
      int64_t v = f.get_int(key, -1);
      if (v < 0 || v >= int64_t(n)) return std::nullopt;
      return int32_t(v);
    };
    TokenizerInfo& info = s->info;
    info.bos_id = id_key("tokenizer.ggml.bos_token_id");
    info.eos_id = id_key("tokenizer.ggml.eos_token_id");
    info.pad_id = id_key("tokenizer.ggml.padding_token_id");
    info.unk_id = id_key("tokenizer.ggml.unknown_token_id");
    if (info.unk_id) s->model.unk_id = info.unk_id;
    if (info.bos_id) info.bos_token = tokens[size_t(*info.bos_id)];
    if (info.eos_id) info.eos_token = tokens[size_t(*info.eos_id)];
    if (info.pad_id) info.pad_token = tokens[size_t(*info.pad_id)];
    if (info.unk_id) info.unk_token = tokens[size_t(*info.unk_id)];
    add_bos = f.get_bool("tokenizer.ggml.add_bos_token", add_bos);
    if (add_bos && info.bos_id) s->prefix_ids.push_back(*info.bos_id);
    if (f.get_bool("tokenizer.ggml.add_eos_token", false) && info.eos_id) s->suffix_ids.push_back(*info.eos_id);
  }
  TokenizerInfo& info = s->info;
  for (const auto& [key, value] : f.metadata()) {
    if (key == "tokenizer.chat_template") info.chat_templates["default"] = value.s;
    else if (key.rfind("tokenizer.chat_template.", 0) == 0) info.chat_templates[key.substr(24)] = value.s;
  }
  if (info.chat_templates.count("default")) info.chat_template = info.chat_templates["default"];
  return s;
}

}  // namespace optiq::tokenizer
