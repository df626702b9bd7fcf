#pragma once
// Internal state of a Tokenizer, filled by the loaders (hf_json.cpp, gguf_vocab.cpp,
// sentencepiece_model.cpp) and used by tokenizer.cpp.
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace optiq::tokenizer {

// Per-token flags.
enum : uint8_t {
  kSpecial = 1,    // skipped by decode(skip_special)
  kControl = 2,
  kRawDecode = 4,  // decoded as its text (GGUF control/user-defined tokens), not through the decoder
  kByte = 8,       // <0xHH> byte token
};

// How token pieces turn into bytes (the HF decoders we support, as per-token operations).
struct DecodeSpec {
  bool byte_level = false;                                       // GPT-2 byte-level map
  std::vector<std::pair<std::string, std::string>> replacements;  // e.g. "▁" -> " "
  bool byte_fallback = false;                                     // "<0xHH>" -> byte
  int strip_start = 0;                                            // leading spaces removed from the text
};

struct SpDeleter {
  void operator()(sentencepiece::SentencePieceProcessor* p) const;
};

struct TokenizerState {
  TokenizerInfo info;
  std::string origin;  // for error messages
  BpeModel model;
  std::unique_ptr<sentencepiece::SentencePieceProcessor, SpDeleter> sp;  // SentencePiece backend
  Normalizer normalizer;
  PreTokenizer pre;
  AddedTokenMatcher raw_added;   // matched on the input text
  AddedTokenMatcher norm_added;  // matched after normalization
  std::unordered_map<int32_t, std::string> added_content;  // id -> content of added tokens
  PieceMap added_ids;                                      // content -> id
  std::vector<uint8_t> flags;                              // per id
  std::vector<int32_t> prefix_ids, suffix_ids;             // post-processor (BOS / EOS)
  DecodeSpec decode;
  std::optional<bool> cfg_add_bos, cfg_add_eos;  // tokenizer_config.json add_bos_token / add_eos_token
  int32_t vocab_size = 0;

  int32_t model_size() const;
  std::string piece(int32_t id) const;  // vocabulary string, "" if unknown
  void add_added_token(const AddedToken& t);
  // Sizes flags to vocab_size and applies the per-id flags of the added tokens.
  void finish();
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
};

struct TokenizerBuilder {
  static std::unique_ptr<Tokenizer> make(std::unique_ptr<TokenizerState> s) {
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(s)));
  }
};

// Loaders (each fills a state; errors name `origin`).
std::unique_ptr<TokenizerState> load_tokenizer_json(const std::string& json_text, const std::string& origin);
std::unique_ptr<TokenizerState> load_gguf_vocab(const formats::GgufFile& f);
std::unique_ptr<TokenizerState> load_sentencepiece(const std::string& model_path);
// tokenizer_config.json: special token names, add_bos/eos_token, chat templates, added_tokens_decoder.
void apply_tokenizer_config(TokenizerState& s, const std::string& config_text, const std::string& origin);
// Looks up the special-token ids named in info (bos_token -> bos_id, ...).
void resolve_special_ids(TokenizerState& s);

}  // namespace optiq::tokenizer
