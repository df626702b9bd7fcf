#pragma once
// The subword models: rank-based BPE (HF tokenizer.json, GGUF "gpt2") and score-based
// SentencePiece merging (GGUF "llama", as SentencePiece's BPE encoder does it).
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optiq::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  enum class Kind { Ranks, Scores };

  // Vocabulary (id -> piece); ids must be 0..n-1. Pieces that repeat keep their first id.
  void set_vocab(std::vector<std::string> pieces);
  // Rank-based merges, rank = index. Returns false when a part or the merged piece is not in the vocab.
  bool add_merge(std::string_view a, std::string_view b);
  void set_scores(std::vector<float> scores) { scores_ = std::move(scores); kind_ = Kind::Scores; }

  Kind kind() const { return kind_; }
  // Options (HF BPE fields).
  bool byte_fallback = false;  // unknown characters -> <0xHH> tokens
  bool ignore_merges = false;  // a word found whole in the vocab is one token
  bool fuse_unk = false;
  std::optional<int32_t> unk_id;
  // Words arrive as raw bytes and the vocabulary is in GPT-2 byte-level form.
  bool byte_level = false;

  // Finishes loading (byte tables); call after set_vocab / add_merge / options.
  void finalize();

  // Appends the ids of one pre-tokenized word. For byte_level models, `word` is raw bytes.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  int32_t size() const { return int32_t(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[size_t(id)]; }
  std::optional<int32_t> find(std::string_view piece) const {
    auto it = piece_to_id_.find(piece);
    if (it == piece_to_id_.end()) return std::nullopt;
    return it->second;
  }
  int32_t byte_token(uint8_t b) const { return byte_fallback_ids_[b]; }  // <0xHH>, -1 if absent

 private:
  // Merges in an open-addressing table keyed by the (left id, right id) pair.
  struct Merge {
    uint64_t key;
    int32_t rank;
    int32_t id;
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t(0);
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  const Merge* find_merge(int32_t a, int32_t b) const;
  void insert_merge(uint64_t k, int32_t id);

  // Direct-mapped cache of short words -> ids (no allocation on the hot path).
  struct CacheSlot {
    uint64_t hash = 0;
    uint8_t len = 0, n = 0;
    char word[22];
    int32_t ids[8];
  };
  static constexpr size_t kCacheSlots = 1 << 16;
  void encode_ranks(std::string_view word, std::vector<int32_t>& out) const;
  void encode_scores(std::string_view word, std::vector<int32_t>& out) const;
  void push_unknown_char(std::string_view ch, std::vector<int32_t>& syms) const;

  Kind kind_ = Kind::Ranks;
  std::vector<std::string> pieces_;
  PieceMap piece_to_id_;
  std::vector<float> scores_;
  std::vector<Merge> merges_;
  size_t merge_count_ = 0;
  int32_t byte_fallback_ids_[256] = {};
  int32_t byte_level_ids_[256] = {};  // id of the single byte-level character for each byte, -1 if absent
  bool all_byte_fallback_ = false;

  mutable std::mutex cache_mu_;
  mutable std::vector<CacheSlot> cache_;
};

}  // namespace optiq::tokenizer
