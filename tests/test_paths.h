#pragma once
// Where test data lives: ../shared beside the project (read-only), and a scratch folder in the build tree.
#include <gtest/gtest.h>

#include <string>

#include "util/mapped_file.h"

namespace optiq::test {

std::string source_dir();
std::string shared_dir();                      // $OPTIQ_SHARED_DIR or <source>/../shared
std::string shared_path(const std::string& rel);
std::string scratch_dir(const std::string& name);  // created fresh under the build tree, one per process
bool in_ci();                                   // CI=true: missing shared data is a failure, not a skip

}  // namespace optiq::test

// Skips (or, in CI, fails) when a file under ../shared is absent.
#define OPTIQ_REQUIRE_SHARED(path)                                                         \
  do {                                                                                     \
    if (!::optiq::file_exists(path) && !::optiq::is_directory(path)) {                     \
      if (::optiq::test::in_ci()) FAIL() << "shared test data missing in CI: " << (path); \
      GTEST_SKIP() << "shared test data not found: " << (path);                            \
    }                                                                                      \
  } while (0)
