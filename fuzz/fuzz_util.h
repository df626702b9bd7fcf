#pragma once
// What the fuzz targets share: inputs as strings, and the rule that user-caused failures (optiq::Error, JSON
// errors) are fine and anything else is a bug (an uncaught exception aborts; sanitizers report the rest).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "util/error.h"

namespace optiq::fuzz {

inline std::string as_string(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// A per-process scratch file holding `bytes` (the file parsers read paths, as users give them).
inline std::string scratch_file(const std::string& bytes, const char* suffix) {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    return std::string(t ? t : "/tmp");
  }();
  const std::string path = dir + "/optiq-fuzz-" + std::to_string(getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

}  // namespace optiq::fuzz

// Runs `body`; optiq::Error and std::invalid_argument-style input errors are the expected way to refuse input.
#define OPTIQ_FUZZ_GUARD(...)            \
  try {                                   \
    __VA_ARGS__;                               \
  } catch (const optiq::Error&) {         \
  } catch (const nlohmann::json::exception&) { \
  }

// The request parsers refuse input with ApiError (the error each API returns) as well.
#define OPTIQ_FUZZ_GUARD_API(...)              \
  try {                                         \
    __VA_ARGS__;                                     \
  } catch (const optiq::server::ApiError&) {    \
  } catch (const optiq::Error&) {               \
  } catch (const nlohmann::json::exception&) {  \
  }
