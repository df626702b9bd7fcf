#pragma once
// Where two texts that should be equal first differ, for golden-test failure messages.
#include <string>

#include <nlohmann/json.hpp>

namespace optiq::test {

// "at byte N" and 120 bytes of each text from 40 before it, JSON-quoted so that whitespace shows.
inline std::string first_diff(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) + "\n  want: " + nlohmann::json(want.substr(from, 120)).dump() +
         "\n  got:  " + nlohmann::json(got.substr(from, 120)).dump();
}

}  // namespace optiq::test
