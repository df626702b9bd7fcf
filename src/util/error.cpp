#include "util/error.h"

#include <cstdio>
#include <cstdlib>

namespace optiq {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "optiq: internal check failed at %s:%d: %s (%s)\n", file, line, cond, msg.c_str());
  std::abort();
}

}  // namespace optiq
