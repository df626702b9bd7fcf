#include "hub/hub.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <vector>

#include "util/error.h"
#include "util/log.h"

namespace fs = std::filesystem;

namespace optiq::hub {

namespace {

std::string env(const char* k) {
  const char* v = std::getenv(k);
  return v ? v : "";
}

bool truthy(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return v == "1" || v == "on" || v == "yes" || v == "true";
}

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// ---------------------------------------------------------------- HTTP (libcurl)

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last response of a redirect chain
  std::string body;
  std::string error;  // transport failure (no response), else empty
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) r->headers.clear();  // a new response (after a redirect)
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string k = line.substr(0, colon);
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    r->headers[k] = trim(line.substr(colon + 1));
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<Response*>(user)->body.append(data, size * n);
  return size * n;
}

struct Sink {
  FILE* f = nullptr;
  int write_errno = 0;
  int64_t written = 0;
  long status = 0;        // only 2xx bodies are written
  CURL* curl = nullptr;
  std::function<void(int64_t)> progress;
};

size_t on_file(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  if (s->status == 0) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status < 200 || s->status >= 300) return size * n;  // an error page: not file content
  if (std::fwrite(data, 1, size * n, s->f) != size * n) {
    s->write_errno = errno ? errno : EIO;
    return 0;  // aborts the transfer
  }
  s->written += int64_t(size * n);
  if (s->progress) s->progress(s->written);
  return size * n;
}

class Http {
 public:
  explicit Http(const HubConfig& cfg) : cfg_(cfg) { curl_init_once(); }

  // One request; redirects are followed only when `follow` (the hub answers LFS files with a redirect to
  // a CDN: the token is sent to the endpoint only, never to where it redirects).
  Response request(const std::string& url, const char* method, bool follow, bool auth) const {
    Response r;
    CURL* c = curl_easy_init();
    if (!c) throw Error(ErrorKind::Internal, "libcurl failed to initialise");
    curl_slist* h = headers(auth);
    setup(c, url, h, follow);
    if (std::strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    perform(c, h, r);  // the callbacks write into r itself: it must not move before the transfer
    return r;
  }

  // GET url appending to `f` from byte `from` (a Range request when from > 0). Returns the status and
  // headers; sink.written counts the bytes appended.
  Response download(const std::string& url, bool auth, int64_t from, Sink& sink) const {
    Response r;
    CURL* c = curl_easy_init();
    if (!c) throw Error(ErrorKind::Internal, "libcurl failed to initialise");
    curl_slist* h = headers(auth);
    setup(c, url, h, /*follow=*/true);
    if (from > 0) curl_easy_setopt(c, CURLOPT_RANGE, (std::to_string(from) + "-").c_str());
    sink.curl = c;
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_file);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    // A stalled transfer (under 1 KB/s for 60 s) counts as cut, and resumes.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    perform(c, h, r);  // the callbacks write into r itself: it must not move before the transfer
    return r;
  }

 private:
  curl_slist* headers(bool auth) const {
    curl_slist* h = nullptr;
    h = curl_slist_append(h, "User-Agent: optiq/0.1; hf_hub/compatible");
    h = curl_slist_append(h, "Accept-Encoding: identity");  // sizes and hashes are of the raw bytes
    if (auth && !cfg_.token.empty()) h = curl_slist_append(h, ("Authorization: Bearer " + cfg_.token).c_str());
    return h;
  }
  // Runs the transfer set up on c, fills r's transport error and status, and frees c and h.
  static void perform(CURL* c, curl_slist* h, Response& r) {
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  }
  static void setup(CURL* c, const std::string& url, curl_slist* h, bool follow) {
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  }
  const HubConfig& cfg_;
};

std::string escape(const std::string& s) {
  curl_init_once();
  char* e = curl_easy_escape(nullptr, s.c_str(), int(s.size()));
  std::string r = e ? e : s;
  curl_free(e);
  return r;
}

// ---------------------------------------------------------------- checksums (OpenSSL)

// sha256 of the file (LFS etags), or its git blob sha1 (sha1 of "blob <size>\0" + content; small files).
std::string file_digest(const std::string& path, bool git_sha1) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::Internal, path + ": cannot read back the download");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, git_sha1 ? EVP_sha1() : EVP_sha256(), nullptr);
  if (git_sha1) {
    const std::string head = "blob " + std::to_string(fs::file_size(path));
    EVP_DigestUpdate(ctx, head.c_str(), head.size() + 1);  // with its NUL
  }
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), size_t(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  return out;
}

// ---------------------------------------------------------------- what optiq loads from a repo

bool wanted_model_file(const std::string& f) {
  static const std::set<std::string> exact = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                              "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                                              "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt",
                                              "model.safetensors.index.json"};
  return exact.count(f) > 0;
}

bool wanted_adapter_file(const std::string& f) {
  return f == "adapter_config.json" || f == "adapters.safetensors" || f == "adapter_model.safetensors" ||
         f == "optiq_lora_config.json";
}

// The repo's weights optiq reads: the shards an index names, else top-level model*.safetensors, else the
// one .gguf (or the one `file` names).
std::vector<std::string> select_files(const std::vector<std::string>& files, const RepoRef& ref, Kind kind,
                                      const std::function<std::string(const std::string&)>& fetch_text) {
  auto has = [&](const std::string& f) { return std::find(files.begin(), files.end(), f) != files.end(); };
  std::vector<std::string> out;
  if (!ref.file.empty()) {
    if (!has(ref.file)) throw Error(ErrorKind::NotFound, ref.repo_id + "@" + ref.revision + " has no file '" + ref.file + "'");
    out.push_back(ref.file);
    return out;
  }
  std::vector<std::string> gguf;
  for (auto& f : files) {
    if (f.find('/') == std::string::npos && ends_with(f, ".gguf")) gguf.push_back(f);
    if (kind == Kind::Model ? wanted_model_file(f) : wanted_adapter_file(f)) out.push_back(f);
  }
  const bool weights_st = kind == Kind::Model ? (has("model.safetensors.index.json") || has("model.safetensors"))
                                              : (has("adapters.safetensors") || has("adapter_model.safetensors"));
  if (kind == Kind::Model && has("model.safetensors.index.json")) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(fetch_text("model.safetensors.index.json"));
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::BadModel, ref.repo_id + ": model.safetensors.index.json is not valid JSON");
    }
    std::set<std::string> shards;
    if (j.contains("weight_map") && j["weight_map"].is_object())
      for (auto& [k, v] : j["weight_map"].items())
        if (v.is_string()) shards.insert(v.get<std::string>());
    for (auto& s : shards) {
      if (!has(s)) throw Error(ErrorKind::BadModel, ref.repo_id + ": the index names shard '" + s + "', which the repo does not have");
      out.push_back(s);
    }
  } else if (kind == Kind::Model) {
    for (auto& f : files)
      if (f.find('/') == std::string::npos && f.rfind("model", 0) == 0 && ends_with(f, ".safetensors")) out.push_back(f);
  }
  const bool any_weights = weights_st || std::any_of(out.begin(), out.end(), [](const std::string& f) { return ends_with(f, ".safetensors"); });
  if (!any_weights) {
    if (gguf.size() == 1) {
      out.push_back(gguf[0]);
    } else if (gguf.empty()) {
      throw Error(ErrorKind::Unsupported, ref.repo_id + "@" + ref.revision + " has no weights optiq reads (" +
                                              (kind == Kind::Model ? "model*.safetensors or .gguf" : "adapter safetensors or .gguf") + ")");
    } else {
      std::string names;
      for (auto& g : gguf) names += (names.empty() ? "" : ", ") + g;
      throw Error(ErrorKind::InvalidArgument, ref.repo_id + " holds several GGUF files; name one as " + ref.repo_id + "/FILE.gguf (" + names + ")");
    }
  }
  return out;
}

// Whether a snapshot folder holds a loadable copy (used when the hub cannot be asked: offline, unreachable).
bool snapshot_complete(const fs::path& snap, const RepoRef& ref, Kind kind) {
  auto ok = [&](const std::string& f) { return fs::exists(snap / f); };  // follows the symlink to its blob
  if (!ref.file.empty()) return ok(ref.file);
  if (!fs::is_directory(snap)) return false;
  bool gguf = false;
  for (auto& e : fs::directory_iterator(snap)) gguf |= ends_with(e.path().filename().string(), ".gguf") && fs::exists(e.path());
  if (kind == Kind::Adapter) return gguf || (ok("adapter_config.json") && (ok("adapters.safetensors") || ok("adapter_model.safetensors")));
  if (gguf) return true;
  if (!ok("config.json")) return false;
  if (ok("model.safetensors.index.json")) {
    try {
      std::ifstream in(snap / "model.safetensors.index.json");
      auto j = nlohmann::json::parse(in);
      for (auto& [k, v] : j.at("weight_map").items())
        if (!v.is_string() || !ok(v.get<std::string>())) return false;
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }
  for (auto& e : fs::directory_iterator(snap)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("model", 0) == 0 && ends_with(n, ".safetensors") && fs::exists(e.path())) return true;
  }
  return false;
}

std::string human(int64_t bytes) {
  char b[32];
  if (bytes >= (int64_t(1) << 30)) std::snprintf(b, sizeof b, "%.2f GB", double(bytes) / 1e9);
  else if (bytes >= (int64_t(1) << 20)) std::snprintf(b, sizeof b, "%.1f MB", double(bytes) / 1e6);
  else std::snprintf(b, sizeof b, "%.1f kB", double(bytes) / 1e3);
  return b;
}

// ---------------------------------------------------------------- the resolver

class Resolver {
 public:
  Resolver(const HubConfig& cfg, RepoRef ref, Kind kind)
      : cfg_(cfg), ref_(std::move(ref)), kind_(kind), http_(cfg), repo_(repo_folder(cfg, ref_.repo_id)) {}

  std::string run() {
    const fs::path cached = cached_snapshot();
    if (cfg_.offline) {
      if (!cached.empty()) return result(cached);
      throw Error(ErrorKind::NotFound, ref_.repo_id + "@" + ref_.revision + " is not in the Hugging Face cache and HF_HUB_OFFLINE is set (searched " +
                                           searched() + ")");
    }
    const std::string api = cfg_.endpoint + "/api/models/" + ref_.repo_id + "/revision/" + escape(ref_.revision);
    Response r = http_.request(api, "GET", /*follow=*/true, /*auth=*/true);
    if (!r.error.empty()) {
      if (!cached.empty()) {
        OPTIQ_LOG_WARN("cannot reach %s (%s): using the cached %s", cfg_.endpoint.c_str(), r.error.c_str(), cached.string().c_str());
        return result(cached);
      }
      throw Error(ErrorKind::NotFound, "cannot reach " + cfg_.endpoint + " (" + r.error + ") to download " + ref_.repo_id + "@" + ref_.revision +
                                           ", and the Hugging Face cache has no copy (searched " + searched() + ")");
    }
    check_status(r, "");
    nlohmann::json info;
    try {
      info = nlohmann::json::parse(r.body);
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorKind::Internal, cfg_.endpoint + ": the hub's answer for " + ref_.repo_id + " is not JSON");
    }
    commit_ = info.value("sha", std::string());
    if (!is_hex(commit_, 40)) throw Error(ErrorKind::Internal, cfg_.endpoint + ": the hub gave no commit for " + ref_.repo_id + "@" + ref_.revision);
    std::vector<std::string> files;
    if (info.contains("siblings") && info["siblings"].is_array())
      for (auto& s : info["siblings"])
        if (s.is_object() && s.contains("rfilename") && s["rfilename"].is_string()) files.push_back(s["rfilename"].get<std::string>());
    snap_ = repo_ / "snapshots" / commit_;
    auto needed = select_files(files, ref_, kind_, [&](const std::string& f) {
      ensure(f);
      std::ifstream in(snap_ / f);
      return std::string(std::istreambuf_iterator<char>(in), {});
    });
    for (auto& f : needed) ensure(f);
    if (ref_.revision != commit_) {  // refs/<revision> -> commit, as huggingface_hub writes it
      const fs::path refs = repo_ / "refs" / ref_.revision;
      fs::create_directories(refs.parent_path());
      std::ofstream(refs, std::ios::trunc) << commit_;
    }
    return result(snap_);
  }

 private:
  std::string searched() const { return (repo_ / "snapshots").string(); }

  std::string result(const fs::path& snap) const {
    if (!ref_.file.empty()) return (snap / ref_.file).string();
    if (kind_ == Kind::Model && !fs::exists(snap / "config.json"))  // a GGUF repo: its one .gguf file
      for (auto& e : fs::directory_iterator(snap))
        if (ends_with(e.path().filename().string(), ".gguf")) return e.path().string();
    if (kind_ == Kind::Adapter && !fs::exists(snap / "adapter_config.json"))
      for (auto& e : fs::directory_iterator(snap))
        if (ends_with(e.path().filename().string(), ".gguf")) return e.path().string();
    return snap.string();
  }

  // The snapshot a revision names in the cache, when it holds a loadable copy.
  fs::path cached_snapshot() const {
    std::string commit = ref_.revision;
    if (!is_hex(commit, 40)) {
      std::ifstream in(repo_ / "refs" / ref_.revision);
      if (!in) return {};
      std::getline(in, commit);
      commit = trim(commit);
    }
    const fs::path snap = repo_ / "snapshots" / commit;
    return is_hex(commit, 40) && snapshot_complete(snap, ref_, kind_) ? snap : fs::path();
  }

  [[noreturn]] void fail_status(const Response& r, const std::string& file) const {
    const std::string code = r.header("x-error-code"), what = ref_.repo_id + (file.empty() ? "" : "/" + file);
    if (code == "GatedRepo" || (r.status == 403 && !cfg_.token.empty()))
      throw Error(ErrorKind::InvalidArgument,
                  ref_.repo_id + " is a gated repository: accept its terms on the hub, then set HF_TOKEN to a token of that account" +
                      (cfg_.token.empty() ? "" : " (the HF_TOKEN given has no access)"));
    if (code == "RevisionNotFound") throw Error(ErrorKind::NotFound, "revision '" + ref_.revision + "' not found in " + ref_.repo_id);
    if (code == "EntryNotFound") throw Error(ErrorKind::NotFound, what + " not found at revision " + ref_.revision);
    if (r.status == 401 || r.status == 403)
      throw Error(ErrorKind::NotFound, "repository " + ref_.repo_id + " not found on " + cfg_.endpoint +
                                           (cfg_.token.empty() ? " (or it is private: set HF_TOKEN)" : " (or HF_TOKEN has no access to it)"));
    if (r.status == 404)
      throw Error(ErrorKind::NotFound, (file.empty() ? "repository " + ref_.repo_id : what) + " not found on " + cfg_.endpoint);
    throw Error(ErrorKind::Internal, cfg_.endpoint + " answered HTTP " + std::to_string(r.status) + " for " + what);
  }
  void check_status(const Response& r, const std::string& file) const {
    if (r.status < 200 || r.status >= 400) fail_status(r, file);
  }

  // Makes snapshots/<commit>/<f> exist: a link to its blob, downloaded (resumably, verified) if absent.
  void ensure(const std::string& f) {
    if (f.find("..") != std::string::npos || f.empty() || f[0] == '/')
      throw Error(ErrorKind::Internal, ref_.repo_id + ": the hub listed a file with an unsafe name: " + f);
    const fs::path link = snap_ / f;
    if (fs::exists(link)) return;  // (following the link) already here
    const std::string url = cfg_.endpoint + "/" + ref_.repo_id + "/resolve/" + commit_ + "/" + f;
    Response head = http_.request(url, "HEAD", /*follow=*/false, /*auth=*/true);
    if (!head.error.empty()) throw Error(ErrorKind::NotFound, "cannot reach " + cfg_.endpoint + " (" + head.error + ") for " + ref_.repo_id + "/" + f);
    check_status(head, f);
    std::string etag = head.header("x-linked-etag");
    if (etag.empty()) etag = head.header("etag");
    if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
    etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
    if (etag.empty() || etag.find('/') != std::string::npos || etag.find("..") != std::string::npos)
      throw Error(ErrorKind::Internal, cfg_.endpoint + " gave no usable ETag for " + ref_.repo_id + "/" + f);
    std::string size_s = head.header("x-linked-size");
    if (size_s.empty()) size_s = head.header("content-length");
    const int64_t size = size_s.empty() ? -1 : std::atoll(size_s.c_str());
    // LFS files redirect to a CDN: fetch from there without the token; others from the endpoint with it.
    const std::string location = head.status >= 300 && head.status < 400 ? head.header("location") : "";
    const bool absolute = location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0;
    const std::string get_url = location.empty() ? url : absolute ? location : cfg_.endpoint + location;
    const fs::path blob = repo_ / "blobs" / etag;
    fs::create_directories(blob.parent_path());
    if (!fs::exists(blob)) fetch(get_url, /*auth=*/!absolute, blob, size, etag, f);
    fs::create_directories(link.parent_path());
    fs::path rel = "../..";
    for (size_t i = 0; i < f.size(); ++i)
      if (f[i] == '/') rel /= "..";
    std::error_code ec;
    fs::remove(link, ec);  // a dangling link
    fs::create_symlink(rel / "blobs" / etag, link, ec);
    if (ec) fs::copy_file(blob, link, fs::copy_options::overwrite_existing);  // file systems without symlinks
  }

  void fetch(const std::string& url, bool auth, const fs::path& blob, int64_t size, const std::string& etag, const std::string& f) {
    const fs::path part = blob.string() + ".incomplete";
    // One downloader per blob across processes (as huggingface_hub's .lock files).
    const std::string lock_path = blob.string() + ".lock";
    const int lock = ::open(lock_path.c_str(), O_CREAT | O_RDWR, 0644);
    if (lock >= 0) ::flock(lock, LOCK_EX);
    struct Unlock {
      int fd;
      ~Unlock() {
        if (fd >= 0) ::close(fd);
      }
    } unlock{lock};
    if (fs::exists(blob)) return;  // another process finished it meanwhile
    const std::string what = ref_.repo_id + "/" + f;
    const int64_t start = fs::exists(part) ? int64_t(fs::file_size(part)) : 0;
    if (cfg_.progress)
      std::fprintf(stderr, "downloading %s (%s)%s\n", what.c_str(), size >= 0 ? human(size).c_str() : "size unknown",
                   start > 0 ? (", resuming at " + human(start)).c_str() : "");
    const bool tty = isatty(2);
    auto last = std::chrono::steady_clock::now();
    for (int attempt = 0;; ++attempt) {
      int64_t have = fs::exists(part) ? int64_t(fs::file_size(part)) : 0;
      if (size >= 0 && have > size) fs::resize_file(part, 0), have = 0;
      if (size >= 0 && have == size) break;
      FILE* out = std::fopen(part.c_str(), "ab");
      if (!out) throw Error(ErrorKind::Internal, part.string() + ": cannot write (" + std::strerror(errno) + ")");
      Sink sink;
      sink.f = out;
      if (cfg_.progress && tty && size > 0)
        sink.progress = [&](int64_t n) {
          auto now = std::chrono::steady_clock::now();
          if (now - last < std::chrono::milliseconds(200)) return;
          last = now;
          std::fprintf(stderr, "\r  %3d%%  %s / %s", int(100 * (have + n) / size), human(have + n).c_str(), human(size).c_str());
        };
      Response r = http_.download(url, auth, have, sink);
      const bool flushed = std::fclose(out) == 0;
      if (sink.write_errno || !flushed) {
        const int e = sink.write_errno ? sink.write_errno : errno;
        throw Error(ErrorKind::Internal, e == ENOSPC ? "disk full while downloading " + what + " into " + part.string()
                                                     : part.string() + ": write failed (" + std::strerror(e) + ")");
      }
      if (r.error.empty() && r.status >= 400 && r.status != 416) check_status(r, f);
      if (r.error.empty() && have > 0 && r.status == 200) {
        // The server ignored the Range request and sent the whole file after what we had: keep only it.
        std::ifstream in(part, std::ios::binary);
        std::string all((std::istreambuf_iterator<char>(in)), {});
        in.close();
        std::ofstream(part, std::ios::binary | std::ios::trunc).write(all.data() + have, std::streamsize(all.size() - size_t(have)));
      }
      if (r.error.empty() && (size < 0 || int64_t(fs::file_size(part)) >= size)) break;
      if (attempt >= 4)
        throw Error(ErrorKind::NotFound, "downloading " + what + " failed after 5 attempts (" + (r.error.empty() ? "short transfer" : r.error) +
                                             "); run again to resume from " + human(int64_t(fs::file_size(part))));
      OPTIQ_LOG_WARN("download of %s cut at %s (%s): resuming", what.c_str(), human(int64_t(fs::file_size(part))).c_str(),
                     r.error.empty() ? "short transfer" : r.error.c_str());
    }
    if (cfg_.progress && tty) std::fprintf(stderr, "\r  100%%  %s\n", human(int64_t(fs::file_size(part))).c_str());
    if (size >= 0 && int64_t(fs::file_size(part)) != size) {
      fs::remove(part);
      throw Error(ErrorKind::BadModel, "downloaded " + what + " has " + std::to_string(fs::file_size(part)) + " bytes, the hub says " + std::to_string(size));
    }
    const bool sha256 = is_hex(etag, 64), sha1 = is_hex(etag, 40);
    if (sha256 || sha1) {
      const std::string got = file_digest(part.string(), sha1);
      if (got != etag) {
        fs::remove(part);
        throw Error(ErrorKind::BadModel, "checksum mismatch for " + what + ": the hub says " + (sha256 ? "sha256 " : "git sha1 ") + etag +
                                             ", the download has " + got + " (it was discarded; run again)");
      }
    }
    fs::rename(part, blob);
  }

  const HubConfig& cfg_;
  RepoRef ref_;
  Kind kind_;
  Http http_;
  fs::path repo_;
  std::string commit_;
  fs::path snap_;
};

}  // namespace

HubConfig HubConfig::from_env() {
  HubConfig c;
  std::string hf_home = env("HF_HOME");
  if (hf_home.empty()) {
    std::string xdg = env("XDG_CACHE_HOME");
    if (xdg.empty()) xdg = env("HOME") + "/.cache";
    hf_home = xdg + "/huggingface";
  }
  c.cache_dir = env("HF_HUB_CACHE");
  if (c.cache_dir.empty()) c.cache_dir = env("HUGGINGFACE_HUB_CACHE");
  if (c.cache_dir.empty()) c.cache_dir = hf_home + "/hub";
  c.endpoint = env("HF_ENDPOINT");
  if (c.endpoint.empty()) c.endpoint = "https://huggingface.co";
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  c.token = env("HF_TOKEN");
  if (c.token.empty()) c.token = env("HUGGING_FACE_HUB_TOKEN");
  if (c.token.empty()) {
    std::ifstream in(hf_home + "/token");
    std::string t;
    if (in && std::getline(in, t)) c.token = trim(t);
  }
  c.offline = truthy(env("HF_HUB_OFFLINE"));
  c.progress = !truthy(env("HF_HUB_DISABLE_PROGRESS_BARS"));
  return c;
}

std::optional<RepoRef> parse_repo_ref(const std::string& s) {
  static const std::regex re(R"(^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@([A-Za-z0-9._/-]+?))?(?:/([^@]+\.gguf))?$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  RepoRef r;
  r.repo_id = m[1];
  if (m[2].matched) r.revision = m[2];
  if (m[3].matched) r.file = m[3];
  if (r.repo_id.find("..") != std::string::npos || r.revision.find("..") != std::string::npos || r.file.find("..") != std::string::npos)
    return std::nullopt;
  return r;
}

std::string repo_folder(const HubConfig& cfg, const std::string& repo_id) {
  std::string n = repo_id;
  size_t p;
  while ((p = n.find('/')) != std::string::npos) n.replace(p, 1, "--");
  return cfg.cache_dir + "/models--" + n;
}

std::string resolve(const std::string& ref, Kind kind, const HubConfig& cfg) {
  if (fs::exists(ref)) return ref;
  auto r = parse_repo_ref(ref);
  if (!r) return ref;  // not a repo id: the loader reports the missing path as it always has
  OPTIQ_LOG_INFO("%s: a Hugging Face repo id (cache %s)", ref.c_str(), cfg.cache_dir.c_str());
  return Resolver(cfg, *r, kind).run();
}

}  // namespace optiq::hub
