#pragma once
// Python str operations on UTF-8 strings (code-point aware where Python is), used by methods and filters.
#include <string>
#include <vector>

namespace optiq::chat::pystr {

std::string upper(const std::string& s);
std::string lower(const std::string& s);
std::string capitalize(const std::string& s);
std::string title(const std::string& s);  // str.title()
// which: 0 both, 1 left, 2 right; chars == nullptr strips whitespace
std::string strip(const std::string& s, const std::string* chars, int which = 0);
std::string replace(const std::string& s, const std::string& old, const std::string& repl, long long count = -1);
std::vector<std::string> split(const std::string& s, const std::string* sep, long long maxsplit = -1);
std::vector<std::string> rsplit(const std::string& s, const std::string* sep, long long maxsplit = -1);
std::vector<std::string> splitlines(const std::string& s, bool keepends = false);
bool is_space_cp(char32_t c);
bool is_cased(char32_t c);

}  // namespace optiq::chat::pystr
