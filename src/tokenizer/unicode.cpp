#include "tokenizer/unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>

namespace optiq::tokenizer {

uint32_t utf8_next(std::string_view s, size_t& i) {
  unsigned char c = uint8_t(s[i]);
  int n = utf8_len(c);
  if (n == 1 || i + n > s.size()) {
    ++i;
    return c < 0x80 ? c : 0xFFFD;
  }
  uint32_t cp = c & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    unsigned char d = uint8_t(s[i + k]);
    if ((d & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (d & 0x3F);
  }
  i += n;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Length of the valid UTF-8 sequence at s[i] (1..4), 0 if invalid, -1 if valid so far but cut off.
static int valid_seq(std::string_view s, size_t i) {
  unsigned char c = uint8_t(s[i]);
  if (c < 0x80) return 1;
  int n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) n = 3;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else return 0;
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return -1;
    unsigned char d = uint8_t(s[i + k]);
    if (k == 1 ? (d < lo || d > hi) : ((d & 0xC0) != 0x80)) return 0;
  }
  return n;
}

bool utf8_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    int n = valid_seq(s, i);
    if (n <= 0) return false;
    i += size_t(n);
  }
  return true;
}

size_t utf8_incomplete_tail(std::string_view s) {
  size_t start = s.size() >= 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    unsigned char c = uint8_t(s[i]);
    if ((c & 0xC0) == 0x80) continue;
    if (valid_seq(s, i) == -1) return s.size() - i;
  }
  return 0;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    int n = valid_seq(s, i);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    // Maximal invalid subsequence: a lead byte plus the continuation bytes that still fit it.
    out += "\xEF\xBF\xBD";
    size_t j = i + 1;
    unsigned char c = uint8_t(s[i]);
    int want = (c >= 0xC2 && c <= 0xF4) ? utf8_len(c) - 1 : 0;
    while (want > 0 && j < s.size() && (uint8_t(s[j]) & 0xC0) == 0x80) {
      // only consume while the prefix stays a valid start (checked cheaply for the 2nd byte)
      if (j == i + 1) {
        unsigned char d = uint8_t(s[j]);
        if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) ||
            (c == 0xF4 && d > 0x8F))
          break;
      }
      ++j;
      --want;
    }
    i = j;
  }
  return out;
}

namespace {
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};  // code points < 324 only
  ByteMap() {
    from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

uint32_t byte_to_cp(uint8_t b) { return byte_map().to_cp[b]; }
int cp_to_byte(uint32_t cp) { return cp < 324 ? byte_map().from_cp[cp] : -1; }

std::string bytes_to_byte_level(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) utf8_append(out, byte_to_cp(c));
  return out;
}

bool byte_level_to_bytes(std::string_view s, std::string& out) {
  out.clear();
  size_t i = 0;
  while (i < s.size()) {
    int b = cp_to_byte(utf8_next(s, i));
    if (b < 0) return false;
    out += char(b);
  }
  return true;
}

static std::string utf8proc_run(std::string_view s, int options) {
  utf8proc_uint8_t* res = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    utf8proc_ssize_t(s.size()), &res, utf8proc_option_t(options));
  if (n < 0) return std::string(s);  // invalid UTF-8: leave as is
  std::string out(reinterpret_cast<char*>(res), size_t(n));
  std::free(res);
  return out;
}

// Code points that are unchanged by NFC, have combining class 0 and never compose with the
// character before them (checked against Python's unicodedata 14.0).
static bool nfc_inert(uint32_t cp) {
  return cp < 0x300 || (cp >= 0x400 && cp <= 0x482) || (cp >= 0x48A && cp <= 0x52F) ||
         (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0x1F000 && cp <= 0x1FAFF);
}

static std::string normalize_form(std::string_view s, NormForm form) {
  switch (form) {
    case NormForm::NFC: return utf8proc_run(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case NormForm::NFD: return utf8proc_run(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case NormForm::NFKC: return utf8proc_run(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case NormForm::NFKD: return utf8proc_run(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  return std::string(s);
}

std::string normalize(std::string_view s, NormForm form) {
  bool ascii = true;
  for (char c : s) ascii &= (uint8_t(c) < 0x80);
  if (ascii) return std::string(s);
  if (form != NormForm::NFC) return normalize_form(s, form);
  // NFC(a + b) = NFC(a) + NFC(b) when b starts with an ASCII character (a starter that never
  // composes with what precedes it): normalize only the chunks between ASCII characters that
  // hold a character which NFC might change.
  std::string out;
  out.reserve(s.size());
  size_t chunk = 0, i = 0;
  bool inert = true;
  auto flush = [&](size_t end) {
    std::string_view c = s.substr(chunk, end - chunk);
    if (inert) out.append(c);
    else out += normalize_form(c, NormForm::NFC);
    chunk = end;
    inert = true;
  };
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = utf8_next(s, i);
    if (cp < 0x80 && start > chunk) flush(start);
    inert = inert && nfc_inert(cp);
  }
  flush(s.size());
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) utf8_append(out, uint32_t(utf8proc_tolower(utf8proc_int32_t(utf8_next(s, i)))));
  return out;
}

std::string strip_accents(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = utf8_next(s, i);
    if (utf8proc_category(utf8proc_int32_t(cp)) != UTF8PROC_CATEGORY_MN) utf8_append(out, cp);
  }
  return out;
}

bool is_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace optiq::tokenizer
