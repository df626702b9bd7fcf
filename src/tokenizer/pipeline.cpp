#include "tokenizer/pipeline.h"

#include <utf8proc.h>

#include <algorithm>

#include "tokenizer/unicode.h"

namespace optiq::tokenizer {

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t f; (f = s.find(from, pos)) != std::string::npos; pos = f + from.size()) {
    out.append(s, pos, f - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// Code point that ends just before byte offset `end` (end > 0).
uint32_t cp_before(std::string_view s, size_t end, size_t* begin_out = nullptr) {
  size_t b = end - 1;
  while (b > 0 && (uint8_t(s[b]) & 0xC0) == 0x80 && end - b < 4) --b;
  size_t i = b;
  uint32_t cp = utf8_next(s, i);
  if (begin_out) *begin_out = b;
  return cp;
}

bool is_word_char(uint32_t cp) {
  if (cp < 128) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  auto c = utf8proc_category(utf8proc_int32_t(cp));
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

}  // namespace

std::string Normalizer::apply(std::string_view in) const {
  std::string s(in);
  for (const NormOp& op : ops_) {
    switch (op.kind) {
      case NormOp::Kind::NFC: s = normalize(s, NormForm::NFC); break;
      case NormOp::Kind::NFD: s = normalize(s, NormForm::NFD); break;
      case NormOp::Kind::NFKC: s = normalize(s, NormForm::NFKC); break;
      case NormOp::Kind::NFKD: s = normalize(s, NormForm::NFKD); break;
      case NormOp::Kind::Lowercase: s = to_lower(s); break;
      case NormOp::Kind::StripAccents: s = strip_accents(s); break;
      case NormOp::Kind::Prepend:
        if (!s.empty()) s.insert(0, op.text);
        break;
      case NormOp::Kind::Replace:
        if (!op.re) {
          replace_all(s, op.text, op.content);
        } else {
          std::vector<std::pair<size_t, size_t>> m;
          op.re->find_all(s, m);
          if (m.empty()) break;
          std::string out;
          size_t pos = 0;
          for (auto [b, e] : m) out.append(s, pos, b - pos).append(op.content), pos = e;
          out.append(s, pos, std::string::npos);
          s = std::move(out);
        }
        break;
      case NormOp::Kind::Strip: {
        size_t b = 0, e = s.size();
        if (op.left) {
          for (size_t i = 0; i < e;) {
            size_t j = i;
            if (!is_whitespace(utf8_next(s, j))) break;
            b = i = j;
          }
        }
        if (op.right) {
          while (e > b) {
            size_t cb;
            if (!is_whitespace(cp_before(s, e, &cb))) break;
            e = cb;
          }
        }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

void split_by_regex(const Regex& re, std::string_view s, SplitBehavior behavior, bool invert,
                    std::vector<std::pair<size_t, size_t>>& parts) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(s, m);
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  spans.reserve(m.size() * 2 + 1);
  size_t pos = 0;
  for (auto [b, e] : m) {
    if (b > pos) spans.push_back({pos, b, invert});
    spans.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < s.size()) spans.push_back({pos, s.size(), invert});

  std::vector<Span> res;
  res.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Span& sp : spans)
        if (!sp.match) res.push_back(sp);
      break;
    case SplitBehavior::Isolated:
      res = spans;
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Span& sp : spans) {
        if (sp.match && !prev_match && !res.empty()) res.back().e = sp.e;
        else res.push_back(sp);
        prev_match = sp.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool next_match = false;  // walking right to left
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.match && !next_match && !res.empty()) res.back().b = sp.b;
        else res.push_back(sp);
        next_match = sp.match;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool prev_match = false;
      for (const Span& sp : spans) {
        if (sp.match && prev_match && !res.empty()) res.back().e = sp.e;
        else res.push_back(sp);
        prev_match = sp.match;
      }
      break;
    }
  }
  for (const Span& sp : res)
    if (sp.e > sp.b) parts.emplace_back(sp.b, sp.e);
}

bool PreTokenizer::ends_byte_level() const {
  return !ops_.empty() && ops_.back().kind == PreOp::Kind::ByteLevel;
}

bool PreTokenizer::spans_only() const {
  for (size_t i = 0; i < ops_.size(); ++i) {
    const PreOp& op = ops_[i];
    if (op.kind == PreOp::Kind::Metaspace) return false;
    if (op.kind == PreOp::Kind::ByteLevel && (op.add_prefix_space || i + 1 != ops_.size())) return false;
  }
  return true;
}

void PreTokenizer::for_each_span(std::string_view text, const std::function<void(size_t, size_t)>& fn) const {
  if (!text.empty()) walk(0, text, 0, fn);
}

void PreTokenizer::walk(size_t level, std::string_view text, size_t base,
                        const std::function<void(size_t, size_t)>& fn) const {
  while (level < ops_.size() && !ops_[level].re) ++level;  // plain ByteLevel: no split
  if (level == ops_.size()) {
    fn(base, base + text.size());
    return;
  }
  const PreOp& op = ops_[level];
  const bool byte_level = op.kind == PreOp::Kind::ByteLevel;
  const SplitBehavior beh = byte_level ? SplitBehavior::Isolated : op.behavior;
  const bool inv = byte_level ? false : op.invert;
  if (beh == SplitBehavior::Isolated && !inv) {  // streaming: gap, match, gap, match, ...
    size_t pos = 0, b, e;
    while (op.re->find_next(text, pos, b, e)) {
      if (b > pos) walk(level + 1, text.substr(pos, b - pos), base + pos, fn);
      walk(level + 1, text.substr(b, e - b), base + b, fn);
      pos = e;
    }
    if (pos < text.size()) walk(level + 1, text.substr(pos), base + pos, fn);
    return;
  }
  std::vector<std::pair<size_t, size_t>> parts;
  split_by_regex(*op.re, text, beh, inv, parts);
  for (auto [pb, pe] : parts) walk(level + 1, text.substr(pb, pe - pb), base + pb, fn);
}

void PreTokenizer::run(std::string_view text, bool at_start, std::vector<Piece>& out) const {
  std::vector<Piece> cur;
  cur.push_back(Piece{std::string(text), false, at_start});
  std::vector<Piece> next;
  std::vector<std::pair<size_t, size_t>> parts;
  auto emit_split = [&](const Piece& p, const std::string& s, const Regex& re, SplitBehavior beh, bool inv) {
    parts.clear();
    split_by_regex(re, s, beh, inv, parts);
    for (auto [b, e] : parts) {
      Piece q{s.substr(b, e - b), p.byte_level, p.at_start && b == 0};
      if (p.byte_level) byte_level_to_bytes(std::string(q.text), q.text);
      next.push_back(std::move(q));
    }
  };
  for (const PreOp& op : ops_) {
    next.clear();
    for (Piece& p : cur) {
      switch (op.kind) {
        case PreOp::Kind::Split:
          if (p.byte_level) emit_split(p, bytes_to_byte_level(p.text), *op.re, op.behavior, op.invert);
          else emit_split(p, p.text, *op.re, op.behavior, op.invert);
          break;
        case PreOp::Kind::ByteLevel: {
          if (op.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
          if (op.re) {
            parts.clear();
            split_by_regex(*op.re, p.text, SplitBehavior::Isolated, false, parts);
            for (auto [b, e] : parts) next.push_back(Piece{p.text.substr(b, e - b), true, p.at_start && b == 0});
          } else {
            p.byte_level = true;
            next.push_back(std::move(p));
          }
          break;
        }
        case PreOp::Kind::Metaspace: {
          std::string s = p.text;
          for (size_t f = 0; (f = s.find(' ', f)) != std::string::npos; f += op.replacement.size())
            s.replace(f, 1, op.replacement);
          bool starts = s.compare(0, op.replacement.size(), op.replacement) == 0;
          if (!starts && (op.prepend == PreOp::Prepend::Always || (op.prepend == PreOp::Prepend::First && p.at_start)))
            s.insert(0, op.replacement);
          if (!op.split) {
            next.push_back(Piece{std::move(s), p.byte_level, p.at_start});
            break;
          }
          size_t b = 0;  // split before each replacement character (MergedWithNext)
          for (size_t f = s.find(op.replacement, 1); f != std::string::npos; f = s.find(op.replacement, f + 1)) {
            if (f > b) next.push_back(Piece{s.substr(b, f - b), p.byte_level, p.at_start && b == 0});
            b = f;
          }
          if (s.size() > b) next.push_back(Piece{s.substr(b), p.byte_level, p.at_start && b == 0});
          break;
        }
      }
    }
    cur.swap(next);
  }
  for (Piece& p : cur)
    if (!p.text.empty()) out.push_back(std::move(p));
}

void AddedTokenMatcher::add(const AddedToken& t) {
  if (t.content.empty()) return;
  int32_t node = 0;
  for (unsigned char c : t.content) {
    int32_t found = -1;
    for (auto& [ch, kid] : nodes_[size_t(node)].kids)
      if (ch == c) found = kid;
    if (found < 0) {
      found = int32_t(nodes_.size());
      nodes_[size_t(node)].kids.emplace_back(c, found);
      nodes_.emplace_back();
    }
    node = found;
  }
  if (nodes_[size_t(node)].token < 0) {
    nodes_[size_t(node)].token = int32_t(tokens_.size());
    tokens_.push_back(t);
  }
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    int32_t found = -1;
    for (auto& [ch, kid] : nodes_[size_t(node)].kids)
      if (ch == uint8_t(text[i])) {
        found = kid;
        break;
      }
    if (found < 0) break;
    node = found;
    if (nodes_[size_t(node)].token >= 0) best = nodes_[size_t(node)].token;
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t seg_start = 0, pos = 0;
  const auto& root = nodes_[0].kids;
  while (pos < text.size()) {
    bool may = false;
    for (auto& kid : root) may |= kid.first == uint8_t(text[pos]);
    int32_t idx = may ? longest_at(text, pos) : -1;
    if (idx < 0) {
      pos += size_t(utf8_len(uint8_t(text[pos])));
      continue;
    }
    const AddedToken& t = tokens_[size_t(idx)];
    size_t b = pos, e = pos + t.content.size();
    if (t.single_word) {
      size_t j = e;
      bool bad = (b > 0 && is_word_char(cp_before(text, b))) || (e < text.size() && is_word_char(utf8_next(text, j)));
      if (bad) {
        pos += size_t(utf8_len(uint8_t(text[pos])));
        continue;
      }
    }
    if (t.lstrip) {
      while (b > seg_start) {
        size_t cb;
        if (!is_whitespace(cp_before(text, b, &cb))) break;
        b = cb;
      }
    }
    if (t.rstrip) {
      while (e < text.size()) {
        size_t j = e;
        if (!is_whitespace(utf8_next(text, j))) break;
        e = j;
      }
    }
    if (b > seg_start) out.push_back(Segment{seg_start, b, -1});
    out.push_back(Segment{b, e, t.id});
    seg_start = pos = e;
  }
  if (seg_start < text.size()) out.push_back(Segment{seg_start, text.size(), -1});
}

}  // namespace optiq::tokenizer
