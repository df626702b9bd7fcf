#pragma once
// UTF-8 helpers, the GPT-2 byte <-> printable-character map and Unicode normalization (utf8proc).
#include <cstdint>
#include <string>
#include <string_view>

namespace optiq::tokenizer {

// Length of the UTF-8 sequence that starts with byte c (1 for stray continuation bytes).
inline int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}
// Decodes one code point at s[i] (advancing i); invalid bytes decode as U+FFFD, one byte each.
uint32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, uint32_t cp);
// Number of bytes at the end of s that form an incomplete (but so far valid) UTF-8 sequence.
size_t utf8_incomplete_tail(std::string_view s);
bool utf8_valid(std::string_view s);
// Replaces invalid UTF-8 with U+FFFD (one per maximal invalid subsequence, as from_utf8_lossy).
std::string utf8_sanitize(std::string_view s);

// GPT-2 byte-level alphabet: every byte maps to one printable code point ("Ġ" = space).
uint32_t byte_to_cp(uint8_t b);
int cp_to_byte(uint32_t cp);  // -1 when cp is not in the alphabet
std::string bytes_to_byte_level(std::string_view raw);
// Inverse map; returns false (and leaves out unspecified) if some character is not in the alphabet.
bool byte_level_to_bytes(std::string_view s, std::string& out);

enum class NormForm { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, NormForm form);
std::string to_lower(std::string_view s);
std::string strip_accents(std::string_view s);  // drops combining marks (Mn)
bool is_whitespace(uint32_t cp);                 // Unicode White_Space

}  // namespace optiq::tokenizer
