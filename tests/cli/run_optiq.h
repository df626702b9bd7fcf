#pragma once
// Runs the built optiq binary as a user would, with stdout and stderr captured to files.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "test_paths.h"
#include "util/mapped_file.h"

extern char** environ;

namespace optiq {

struct CmdResult {
  int rc = -1;
  std::string out, err;
};

inline std::string optiq_bin() { return std::string(OPTIQ_BINARY_DIR) + "/optiq"; }

// `optiq ARGS...`; `scratch` names the folder under the test scratch dir that holds the captures.
inline CmdResult run_optiq(const std::vector<std::string>& args, const std::string& scratch) {
  const std::string dir = test::scratch_dir(scratch);
  const std::string out_path = dir + "/stdout", err_path = dir + "/stderr";
  std::vector<std::string> argv_s = {optiq_bin()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CmdResult r;
  pid_t pid = 0;
  int status = 0;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0 && waitpid(pid, &status, 0) == pid)
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  posix_spawn_file_actions_destroy(&fa);
  r.out = read_text_file(out_path);
  r.err = read_text_file(err_path);
  return r;
}

}  // namespace optiq
