#pragma once
// Normalizers, pre-tokenizers and the added-token matcher of the HF tokenizer pipeline.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace optiq::tokenizer {

struct NormOp {
  enum class Kind { NFC, NFD, NFKC, NFKD, Prepend, Replace, Lowercase, Strip, StripAccents };
  Kind kind = Kind::NFC;
  std::string text;             // Prepend: prefix; Replace: literal pattern (when re is null)
  std::string content;          // Replace: replacement
  std::shared_ptr<Regex> re;    // Replace with a regex pattern
  bool left = true, right = true;  // Strip
};

class Normalizer {
 public:
  void add(NormOp op) { ops_.push_back(std::move(op)); }
  bool empty() const { return ops_.empty(); }
  std::string apply(std::string_view s) const;

 private:
  std::vector<NormOp> ops_;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreOp {
  enum class Kind { Split, ByteLevel, Metaspace };
  Kind kind = Kind::Split;
  std::shared_ptr<Regex> re;  // Split; ByteLevel with use_regex (GPT-2 pattern)
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement = "\xE2\x96\x81";  // Metaspace "▁"
  enum class Prepend { Always, First, Never } prepend = Prepend::Always;
  bool split = true;  // Metaspace
};

// One pre-token. `byte_level` pieces hold raw bytes that the model reads in GPT-2 byte-level form.
struct Piece {
  std::string text;
  bool byte_level = false;
  bool at_start = false;  // begins at offset 0 of the input (Metaspace prepend_scheme "first")
};

class PreTokenizer {
 public:
  void add(PreOp op) { ops_.push_back(std::move(op)); }
  bool empty() const { return ops_.empty(); }
  bool ends_byte_level() const;  // the last step is ByteLevel
  void run(std::string_view text, bool at_start, std::vector<Piece>& out) const;
  // True when pre-tokens are plain substrings of the input (only splits, ByteLevel last and without
  // add_prefix_space); then run_spans gives them as [begin, end) offsets without copying.
  bool spans_only() const;
  // Calls fn(begin, end) for each pre-token, in order (requires spans_only()).
  void for_each_span(std::string_view text, const std::function<void(size_t, size_t)>& fn) const;

 private:
  void walk(size_t level, std::string_view text, size_t base, const std::function<void(size_t, size_t)>& fn) const;
  std::vector<PreOp> ops_;
};

// Splits s by the matches of re according to an HF split behaviour; appends non-empty parts.
void split_by_regex(const Regex& re, std::string_view s, SplitBehavior behavior, bool invert,
                    std::vector<std::pair<size_t, size_t>>& parts);

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Leftmost-longest matcher over a set of added tokens.
class AddedTokenMatcher {
 public:
  void add(const AddedToken& t);  // content must be non-empty
  bool empty() const { return tokens_.empty(); }
  struct Segment {
    size_t begin, end;
    int32_t id;  // -1: plain text
  };
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> kids;
    int32_t token = -1;  // index into tokens_
  };
  int32_t longest_at(std::string_view text, size_t pos) const;
  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_{Node{}};
};

}  // namespace optiq::tokenizer
