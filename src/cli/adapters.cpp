#include "cli/adapters.h"

#include <filesystem>

#include "hub/hub.h"
#include "util/error.h"
#include "util/log.h"

namespace optiq::cli {

std::vector<int> mount_adapters(model::Model& m, const std::vector<std::string>& specs) {
  std::vector<int> indices;
  for (const std::string& spec : specs) {
    // NAME=REF, or REF (named after its folder, file or repo); REF is a path or a Hugging Face repo id.
    const size_t eq = spec.find('=');
    std::string name, path;
    if (eq != std::string::npos && !std::filesystem::exists(spec)) {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    } else if (auto repo = hub::parse_repo_ref(spec); repo && !std::filesystem::exists(spec)) {
      path = spec;
      name = repo->repo_id.substr(repo->repo_id.find('/') + 1);
    } else {
      path = spec;
      const auto norm = std::filesystem::path(spec).lexically_normal();
      name = std::filesystem::is_regular_file(norm) ? norm.stem().string() : norm.filename().string();
      if (name.empty()) name = norm.parent_path().filename().string();
    }
    if (name.empty() || path.empty()) throw Error(ErrorKind::InvalidArgument, "--adapter '" + spec + "': expected PATH or NAME=PATH");
    model::check_adapter_name(name);  // before any download
    path = hub::resolve(path, hub::Kind::Adapter);
    model::Adapter a = model::load_adapter(path, m.config(), name);
    OPTIQ_LOG_INFO("adapter '%s' mounted from %s: %s", name.c_str(), path.c_str(), a.summary().c_str());
    indices.push_back(m.mount_adapter(std::move(a)));
  }
  return indices;
}

}  // namespace optiq::cli
