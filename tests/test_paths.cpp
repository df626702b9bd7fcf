#include "test_paths.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "util/mapped_file.h"

namespace optiq::test {

std::string source_dir() { return OPTIQ_SOURCE_DIR; }

std::string shared_dir() {
  if (const char* e = std::getenv("OPTIQ_SHARED_DIR")) return e;
  return std::string(OPTIQ_SOURCE_DIR) + "/../shared";
}

std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }

std::string scratch_dir(const std::string& name) {
  // One folder per process: ctest runs every test case as its own process, several at once, and two
  // cases that use the same name must not wipe each other's files.
  std::string d = std::string(OPTIQ_BINARY_DIR) + "/test-scratch/" + name + "-" + std::to_string(getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

bool in_ci() {
  const char* e = std::getenv("CI");
  return e && std::string(e) == "true";
}

}  // namespace optiq::test
