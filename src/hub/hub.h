#pragma once
// Model and adapter references. A reference is a local folder or .gguf file, used as it is, or a Hugging Face
// repo id "org/name[@revision]" (or "org/name[@revision]/FILE.gguf" for one file of a GGUF repo), resolved
// through the Hugging Face hub cache exactly as huggingface_hub lays it out:
//   <cache>/models--org--name/refs/<revision>          the commit a branch or tag points at
//   <cache>/models--org--name/blobs/<etag>             file contents, named by sha256 (LFS) or git sha1
//   <cache>/models--org--name/snapshots/<commit>/<f>   relative symlinks into blobs/
// so that files other tools downloaded are reused and ours are reusable by them. Files the cache lacks are
// downloaded over HTTPS from $HF_ENDPOINT (with $HF_TOKEN), resumably, and checked against the hub's
// sha256 / git sha1 before they enter the cache; only what optiq loads is fetched (config, tokenizer and
// weights in the format it reads; not *.bin, *.pt, ONNX ...). HF_HUB_OFFLINE=1 uses the cache alone.
#include <optional>
#include <string>

namespace optiq::hub {

enum class Kind { Model, Adapter };

struct RepoRef {
  std::string repo_id;            // "org/name"
  std::string revision = "main";  // branch, tag or 40-hex commit
  std::string file;               // one file of the repo (a .gguf), or empty for the whole model
};
// nullopt when `ref` does not have the form of a repo id (it is then a path).
std::optional<RepoRef> parse_repo_ref(const std::string& ref);

struct HubConfig {
  std::string cache_dir;  // $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
  std::string endpoint;   // $HF_ENDPOINT, else https://huggingface.co
  std::string token;      // $HF_TOKEN, else the token file $HF_HOME/token
  bool offline = false;   // $HF_HUB_OFFLINE
  bool progress = true;   // progress on stderr ($HF_HUB_DISABLE_PROGRESS_BARS turns it off)
  static HubConfig from_env();
};

// A path optiq can load: `ref` itself when it names an existing file or folder; else the snapshot folder (or
// the one .gguf file) of the repo it names, downloading what the cache lacks. Throws Error naming the repo:
// NotFound (repository, revision or file not found; offline or unreachable with no complete copy cached,
// naming the path searched), InvalidArgument (gated or private without a token that grants access, a
// reference of the wrong form), BadModel (a download that fails its checksum), Internal (disk full, I/O).
std::string resolve(const std::string& ref, Kind kind, const HubConfig& cfg = HubConfig::from_env());

// <cache>/models--org--name
std::string repo_folder(const HubConfig& cfg, const std::string& repo_id);

}  // namespace optiq::hub
