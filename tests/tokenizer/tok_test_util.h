#pragma once
// Helpers shared by the tokenizer tests.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_paths.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace optiq::test {

// llama.cpp test vectors: X.inp (strings separated by "\n__ggml_vocab_test__\n") and X.out
// (one line of space-separated ids per string, without BOS).
inline std::vector<std::pair<std::string, std::vector<int32_t>>> read_vocab_vectors(const std::string& base) {
  std::string inp = read_text_file(base + ".inp");
  std::string out = read_text_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  if (inp.size() >= sep.size() && inp.compare(inp.size() - sep.size(), sep.size(), sep) == 0)
    inp.resize(inp.size() - sep.size());
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    size_t f = inp.find(sep, pos);
    texts.push_back(inp.substr(pos, f == std::string::npos ? std::string::npos : f - pos));
    if (f == std::string::npos) break;
    pos = f + sep.size();
  }
  std::vector<std::pair<std::string, std::vector<int32_t>>> res;
  std::istringstream lines(out);
  std::string line;
  for (const std::string& t : texts) {
    std::getline(lines, line);
    std::istringstream ids(line);
    std::vector<int32_t> v;
    for (int32_t id; ids >> id;) v.push_back(id);
    res.emplace_back(t, std::move(v));
  }
  return res;
}

inline std::string ids_str(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// Encodes every vector (add_special = false); returns how many match, reporting mismatches.
inline int check_vectors(const tokenizer::Tokenizer& tok,
                         const std::vector<std::pair<std::string, std::vector<int32_t>>>& vecs,
                         const std::string& name, bool expect_all = true) {
  int ok = 0;
  for (const auto& [text, want] : vecs) {
    auto got = tok.encode(text, false);
    if (got == want) {
      ++ok;
    } else if (expect_all) {
      ADD_FAILURE() << name << ": '" << text << "'\n  want " << ids_str(want) << "\n  got  " << ids_str(got);
    }
  }
  return ok;
}

}  // namespace optiq::test
