#pragma once
// Text <-> token ids for the model families optiq runs.
//
// Sources: HF tokenizer.json (BPE: byte-level GPT-2/Llama-3/Qwen, SentencePiece-style BPE with
// byte_fallback), GGUF vocabularies ("llama" = SentencePiece scores, "gpt2" = byte-level BPE with a
// pre-tokenizer regex family from tokenizer.ggml.pre), and SentencePiece tokenizer.model files.
// All of them run through one pipeline: added/special tokens are split out first, then
// normalizer -> pre-tokenizer -> model, then BOS/EOS per the post-processor.
// A Tokenizer is immutable after loading; encode/decode are safe to call from several threads.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optiq::formats {
class GgufFile;
}

namespace optiq::tokenizer {

struct TokenizerInfo {
  std::string bos_token, eos_token, pad_token, unk_token;  // "" when the model has none
  std::optional<int32_t> bos_id, eos_id, pad_id, unk_id;
  bool add_bos = false, add_eos = false;  // what encode(add_special = true) does
  // Jinja chat template: tokenizer_config.json "chat_template" (string, or the "default" entry of a
  // list of named templates), chat_template.jinja (takes precedence), or GGUF tokenizer.chat_template.
  std::string chat_template;
  std::map<std::string, std::string> chat_templates;  // every named template, incl. "default"
  std::string source;                                 // "tokenizer.json", "gguf:llama", ... (for logs)
};

struct TokenizerState;  // internal (tokenizer_impl.h)

class Tokenizer {
 public:
  // <dir>/tokenizer.json (+ tokenizer_config.json, chat_template.jinja); else <dir>/tokenizer.model.
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);
  // `origin` names the source in error messages.
  static std::unique_ptr<Tokenizer> from_tokenizer_json(const std::string& json_text,
                                                        const std::string& tokenizer_config_text = "",
                                                        const std::string& origin = "tokenizer.json");
  static std::unique_ptr<Tokenizer> from_gguf(const formats::GgufFile& f);
  // A SentencePiece model file (tokenizer.model); config text as in from_tokenizer_json.
  static std::unique_ptr<Tokenizer> from_sentencepiece(const std::string& model_path,
                                                       const std::string& tokenizer_config_text = "");

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: BOS/EOS as the model's post-processor (or add_bos_token) says. Added/special
  // tokens written in the text (e.g. "<|im_start|>") are always matched as single tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Always valid UTF-8 (invalid byte sequences become U+FFFD, as HF decode does).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
  // The raw bytes this token contributes to decoded text (may be part of a UTF-8 character).
  // The decoders' "strip the leading space of the first token" is not applied here.
  std::string token_to_bytes(int32_t id) const;
  // The token's vocabulary string ("Ġthe", "▁the", "<0x0A>", "<|im_start|>"); "" if out of range.
  std::string token_piece(int32_t id) const;

  int32_t vocab_size() const;  // 1 + the largest id (model vocabulary and added tokens)
  std::optional<int32_t> token_id(std::string_view piece) const;
  // Special: skipped by decode(skip_special): HF added tokens with special=true, GGUF/SentencePiece
  // control and unknown tokens. Control: HF special added tokens other than unk, GGUF token_type 3,
  // SentencePiece control pieces (BOS/EOS, <|im_end|>, ...).
  bool is_special(int32_t id) const;
  bool is_control(int32_t id) const;
  const TokenizerInfo& info() const;

  // Internal: decoders strip this many leading spaces from the decoded text (SPM: 1).
  int strip_leading_spaces() const;

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerState> s);
  std::unique_ptr<TokenizerState> s_;
  friend struct TokenizerBuilder;
};

// Incremental decode: push() returns the text that became final with this token. The
// concatenation of all push() results and flush() equals decode(all ids). Never returns half a
// UTF-8 character; handles the leading-space strip of SentencePiece decoders like HF decode.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // emits what is held back (an incomplete tail becomes U+FFFD)
  void reset();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  int to_strip_ = 0;      // leading spaces still to strip
  std::string pending_;   // bytes not yet emitted (an incomplete UTF-8 tail)
};

}  // namespace optiq::tokenizer
