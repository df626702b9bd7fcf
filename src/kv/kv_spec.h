#pragma once
// What precision each attention layer's K/V cache is stored at, and the kv_config.json that says so.
//
// kv_config.json (the seed's format, written by `optiq kv-cache`): a JSON list
//   [{"layer_idx": 3, "bits": 8, "group_size": 64}, ...]
// layer_idx counts the model's layers; bits 16 means fp16; otherwise MLX affine quantization with
// `group_size` consecutive head_dim elements per scale/bias pair. Layers the file does not list take the
// default precision (--kv-bits / --kv-group-size; fp16 when neither is given).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace optiq::kv {

struct KvPrecision {
  int bits = 16;        // 16: fp16; 2, 3, 4, 5, 6, 8: affine quantized
  int group_size = 64;  // elements per scale/bias pair (ignored at 16 bits)
  bool quantized() const { return bits != 16; }
  // Storage bits per element, counting the fp16 scale and bias of each group (4-bit g64: 4.5).
  double effective_bits() const { return quantized() ? bits + 32.0 / group_size : 16.0; }
  // Bytes that `elems` values take in the cache (codes plus f16 scale and bias per group).
  int64_t bytes(int64_t elems) const { return quantized() ? elems * bits / 8 + elems / group_size * 4 : elems * 2; }
  bool operator==(const KvPrecision& o) const { return bits == o.bits && (!quantized() || group_size == o.group_size); }
};

// The shape a spec is checked against: which layers have a KV cache and how wide a head is.
struct KvShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  std::vector<bool> has_kv;  // per layer; empty = every layer (a plain decoder)
  int64_t state_floats = 0;  // per layer without KV (hybrids' linear attention): f32 recurrent state
  bool layer_has_kv(int l) const { return has_kv.empty() || has_kv[size_t(l)]; }
};

struct KvSpec {
  std::map<int, KvPrecision> layers;  // explicit per-layer entries (kv_config.json)
  KvPrecision default_precision;      // every other layer
  int quantized_kv_start = 0;         // keep fp16 until a sequence holds this many tokens
  // Hadamard-rotate K (with Q) and V of quantized layers before quantizing. Auto = on whenever head_dim
  // is a power of two (the transform needs one); `optiq eval` on stories260K measured it better at 8 and
  // 4 bits (KL 9.9e-4 -> 8.4e-4 and 0.45 -> 0.39).
  enum class Rotation { Auto, On, Off } rotation = Rotation::Auto;
  bool rotates(int head_dim) const;
  std::string source;                 // where the entries came from, for messages

  KvPrecision at(int layer) const;
  // Throws Error(InvalidArgument) naming the offending entry when the spec cannot apply to `shape`.
  void validate(const KvShape& shape) const;
  // One line per run of equal layers and the bytes per token against fp16, for the start-up log.
  std::string describe(const KvShape& shape) const;
  int64_t bytes_per_token(const KvShape& shape) const;       // K and V over all KV layers
  // Mean bits per element over the KV layers: nominal (4, 8, 16) or effective (with scales and biases).
  double mean_bits(const KvShape& shape, bool effective) const;
  static int64_t fp16_bytes_per_token(const KvShape& shape);
};

// Parses the seed's kv_config.json text (`source` names it in errors). Checks types, bits and group
// sizes that no model could accept, and duplicate layers; model-specific checks are in validate().
KvSpec parse_kv_config(const std::string& json_text, const std::string& source);
KvSpec load_kv_config(const std::string& path);
// The seed's JSON for a spec's explicit entries (what `optiq kv-cache` writes).
std::string kv_config_json(const std::map<int, KvPrecision>& layers);

// The precision a command line asks for: --kv-config FILE, --kv-bits N, --kv-group-size G.
KvSpec kv_spec_from_flags(const std::string& kv_config, int kv_bits, int kv_group_size, int quantized_kv_start);

}  // namespace optiq::kv
