#include "kv/kv_spec.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"

namespace optiq::kv {

namespace {

bool bits_ok(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8 || bits == 16; }
bool group_ok(int g) { return g >= 8 && g <= 1024 && (g & (g - 1)) == 0; }

[[noreturn]] void bad(const std::string& where, const std::string& why) {
  throw Error(ErrorKind::InvalidArgument, where + ": " + why);
}

std::string entry_name(const std::string& source, size_t i, int layer) {
  std::string s = source + ": entry " + std::to_string(i);
  if (layer >= 0) s += " (layer_idx " + std::to_string(layer) + ")";
  return s;
}

// Checks a precision against one model; `where` names the entry (or the flag) in the message.
void check_precision(const KvPrecision& p, const KvShape& shape, const std::string& where) {
  // (Specs built in code, e.g. calibration candidates, come here without passing the file parser.)
  if (!bits_ok(p.bits)) bad(where, "bits " + std::to_string(p.bits) + " is not supported (use 2, 3, 4, 5, 6, 8, or 16 for fp16)");
  if (!p.quantized()) return;
  if (!group_ok(p.group_size))
    bad(where, "group_size " + std::to_string(p.group_size) + " is not supported (a power of two from 8 to 1024)");
  if (p.group_size > shape.head_dim || shape.head_dim % p.group_size != 0)
    bad(where, "group_size " + std::to_string(p.group_size) + " does not divide head_dim " +
                   std::to_string(shape.head_dim) + " (groups run along one head; " +
                   (shape.head_dim <= 8 ? "use " + std::to_string(shape.head_dim)
                                        : "use a power of two from 8 to " + std::to_string(shape.head_dim)) + ")");
}

}  // namespace

bool KvSpec::rotates(int head_dim) const {
  const bool pow2 = head_dim >= 2 && (head_dim & (head_dim - 1)) == 0;
  return rotation != Rotation::Off && pow2;
}

KvPrecision KvSpec::at(int layer) const {
  auto it = layers.find(layer);
  return it == layers.end() ? default_precision : it->second;
}

void KvSpec::validate(const KvShape& shape) const {
  const std::string src = source.empty() ? "kv config" : source;
  size_t i = 0;
  for (auto& [layer, p] : layers) {
    std::string where = entry_name(src, i++, layer);
    if (layer < 0 || layer >= shape.n_layers)
      bad(where, "the model has " + std::to_string(shape.n_layers) + " layers (0-" + std::to_string(shape.n_layers - 1) + ")");
    if (!shape.layer_has_kv(layer)) bad(where, "layer " + std::to_string(layer) + " has no KV cache (it is a linear-attention layer)");
    check_precision(p, shape, where);
  }
  if (default_precision.quantized())
    for (int l = 0; l < shape.n_layers; ++l)
      if (shape.layer_has_kv(l) && !layers.count(l)) {
        check_precision(default_precision, shape, "--kv-bits " + std::to_string(default_precision.bits) +
                                                      " --kv-group-size " + std::to_string(default_precision.group_size));
        break;
      }
  if (quantized_kv_start < 0) bad("--quantized-kv-start", "must be >= 0");
}

int64_t KvSpec::bytes_per_token(const KvShape& shape) const {
  int64_t b = 0;
  const int64_t elems = int64_t(shape.n_kv_heads) * shape.head_dim;
  for (int l = 0; l < shape.n_layers; ++l) {
    if (!shape.layer_has_kv(l)) continue;
    b += 2 * at(l).bytes(elems);
  }
  return b;
}

double KvSpec::mean_bits(const KvShape& shape, bool effective) const {
  int n = 0;
  double sum = 0;
  for (int l = 0; l < shape.n_layers; ++l)
    if (shape.layer_has_kv(l)) {
      ++n;
      sum += effective ? at(l).effective_bits() : at(l).bits;
    }
  return n ? sum / n : 0.0;
}

int64_t KvSpec::fp16_bytes_per_token(const KvShape& shape) {
  KvSpec fp16;
  return fp16.bytes_per_token(shape);
}

std::string KvSpec::describe(const KvShape& shape) const {
  auto name = [](const KvPrecision& p) {
    return p.quantized() ? std::to_string(p.bits) + "-bit g" + std::to_string(p.group_size) : std::string("fp16");
  };
  // Runs of attention layers at one precision (linear-attention layers between them do not break a run),
  // written as ranges: "layers 3, 7, 11: 8-bit g64", "layers 0-27: fp16".
  auto ranges = [](const std::vector<int>& v) {
    std::string r;
    for (size_t i = 0; i < v.size();) {
      size_t e = i;
      while (e + 1 < v.size() && v[e + 1] == v[e] + 1) ++e;
      r += (r.empty() ? "" : ", ") + std::to_string(v[i]) + (e > i ? "-" + std::to_string(v[e]) : "");
      i = e + 1;
    }
    return r;
  };
  std::ostringstream os;
  std::vector<int> run, linear;
  KvPrecision run_p;
  auto flush = [&] {
    if (!run.empty()) os << "  layers " << ranges(run) << ": " << name(run_p) << "\n";
    run.clear();
  };
  for (int l = 0; l < shape.n_layers; ++l) {
    if (!shape.layer_has_kv(l)) {
      linear.push_back(l);
      continue;
    }
    if (!run.empty() && !(at(l) == run_p)) flush();
    run_p = at(l);
    run.push_back(l);
  }
  flush();
  if (!linear.empty()) os << "  layers " << ranges(linear) << ": linear attention (a recurrent f32 state per sequence, no KV)\n";
  const int64_t q = bytes_per_token(shape), f = fp16_bytes_per_token(shape);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "  KV bytes per token: %lld (fp16: %lld, %.2fx smaller); mean bits %.2f nominal, %.2f effective",
                (long long)q, (long long)f, q ? double(f) / double(q) : 0.0, mean_bits(shape, false), mean_bits(shape, true));
  os << buf;
  if (quantized_kv_start > 0) os << "; fp16 until a sequence holds " << quantized_kv_start << " tokens";
  const double eff = mean_bits(shape, true);
  if (rotates(shape.head_dim) && eff > 0 && eff < 16.0) os << "; Hadamard rotation on quantized layers";
  return os.str();
}

KvSpec parse_kv_config(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    bad(source, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_array()) bad(source, "expected a JSON list of {\"layer_idx\", \"bits\", \"group_size\"} objects");
  KvSpec spec;
  spec.source = source;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& e = j[i];
    if (!e.is_object()) bad(entry_name(source, i, -1), "expected an object {\"layer_idx\", \"bits\", \"group_size\"}");
    auto get_int = [&](const char* key, int fallback, bool required) -> int {
      auto it = e.find(key);
      if (it == e.end()) {
        if (required) bad(entry_name(source, i, -1), std::string("missing \"") + key + "\"");
        return fallback;
      }
      if (!it->is_number_integer()) bad(entry_name(source, i, -1), std::string("\"") + key + "\" must be an integer");
      int64_t v = it->get<int64_t>();
      if (v < -1000000 || v > 1000000) bad(entry_name(source, i, -1), std::string("\"") + key + "\" is out of range");
      return int(v);
    };
    int layer = get_int("layer_idx", 0, true);
    KvPrecision p;
    p.bits = get_int("bits", 16, true);
    p.group_size = get_int("group_size", 64, false);
    std::string where = entry_name(source, i, layer);
    if (layer < 0) bad(where, "layer_idx must be >= 0");
    if (!bits_ok(p.bits)) bad(where, "bits " + std::to_string(p.bits) + " is not supported (use 2, 3, 4, 5, 6, 8, or 16 for fp16)");
    if (p.quantized() && !group_ok(p.group_size))
      bad(where, "group_size " + std::to_string(p.group_size) + " is not supported (a power of two from 8 to 1024)");
    if (spec.layers.count(layer)) bad(where, "layer " + std::to_string(layer) + " is listed twice");
    spec.layers[layer] = p;
  }
  return spec;
}

KvSpec load_kv_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::NotFound, "cannot read the KV config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_kv_config(ss.str(), path);
}

std::string kv_config_json(const std::map<int, KvPrecision>& layers) {
  // One entry per line, each written as the seed writes it: {"layer_idx": 3, "bits": 8, "group_size": 64}
  std::string out = "[";
  for (auto& [l, p] : layers) {
    out += out.size() == 1 ? "\n  " : ",\n  ";
    out += "{\"layer_idx\": " + std::to_string(l) + ", \"bits\": " + std::to_string(p.bits) +
           ", \"group_size\": " + std::to_string(p.group_size) + "}";
  }
  return out + (layers.empty() ? "]\n" : "\n]\n");
}

KvSpec kv_spec_from_flags(const std::string& kv_config, int kv_bits, int kv_group_size, int quantized_kv_start) {
  KvSpec spec;
  if (!kv_config.empty()) spec = load_kv_config(kv_config);
  if (kv_bits != 0) {
    if (!bits_ok(kv_bits)) bad("--kv-bits", std::to_string(kv_bits) + " is not supported (use 2, 3, 4, 5, 6, 8, or 16 for fp16)");
    spec.default_precision.bits = kv_bits;
  }
  if (kv_group_size != 0) {
    if (!group_ok(kv_group_size)) bad("--kv-group-size", std::to_string(kv_group_size) + " is not supported (a power of two from 8 to 1024)");
    spec.default_precision.group_size = kv_group_size;
  }
  spec.quantized_kv_start = quantized_kv_start;
  return spec;
}

}  // namespace optiq::kv
