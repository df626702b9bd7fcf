// optiq download REPO: resolves a Hugging Face repo id through the HF cache, downloading what it lacks (only
// the files optiq loads), and prints the local path, which every MODEL / --adapter argument also accepts.
#include <cstdio>

#include "cli/commands.h"
#include "cli/flags.h"
#include "hub/hub.h"
#include "util/error.h"

namespace optiq::cli {

int run_download(int argc, char** argv) {
  std::string repo;
  bool adapter = false;
  Flags f("optiq download org/name[@revision][/FILE.gguf] [--adapter]");
  f.add("repo", &repo, "the repo id (or the first argument)");
  f.add_bool("adapter", &adapter, "fetch a LoRA adapter's files instead of a model's");
  if (!f.parse_or_help(argc, argv, 2)) return 0;
  if (repo.empty() && !f.positionals().empty()) repo = f.positionals()[0];
  if (repo.empty()) throw Error(ErrorKind::InvalidArgument, "no repo id (optiq download org/name)");
  if (!hub::parse_repo_ref(repo)) throw Error(ErrorKind::InvalidArgument, "'" + repo + "' is not a Hugging Face repo id (org/name[@revision])");
  std::printf("%s\n", hub::resolve(repo, adapter ? hub::Kind::Adapter : hub::Kind::Model).c_str());
  return 0;
}

}  // namespace optiq::cli
