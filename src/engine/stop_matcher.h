#pragma once
// Finds stop strings in streamed text. Text that might be the start of a stop string is held back
// until it is known not to be; the stop string itself is never emitted.
#include <optional>
#include <string>
#include <vector>

namespace optiq::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Feeds new text; returns the text that can be emitted now. After a stop is found, stopped() is true,
  // matched() names it, and the text after it is dropped.
  std::string push(const std::string& text);
  std::string flush();  // end of generation: release anything held back
  bool stopped() const { return matched_.has_value(); }
  const std::optional<std::string>& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  std::optional<std::string> matched_;
};

}  // namespace optiq::engine
