#pragma once
// Measuring how much each attention layer's output suffers when its KV cache alone is quantized (the
// data behind `optiq kv-cache`).
//
// For each calibration sample the model runs once with fp16 KV: the reference next-token distributions,
// and the residual stream at every layer's input. Then, for each KV layer l and each candidate precision,
// layer l alone stores its K/V at that precision and only layers l..L-1 run again, from the saved stream
// (the layers before l are unchanged, so they are not recomputed): L·C partial passes instead of L·C full
// ones. Each is scored position by position against the reference: mean KL, top-1 agreement, perplexity.
// K/V are quantized on insert, so the prefill already attends over the quantized cache, as decode will.
#include <functional>
#include <map>
#include <vector>

#include "engine/logit_stats.h"
#include "kv/kv_spec.h"
#include "model/model.h"

namespace optiq::engine {

struct KvCalibrationOptions {
  std::vector<int> candidate_bits = {4, 8};
  int group_size = 64;
  kv::KvSpec::Rotation rotation = kv::KvSpec::Rotation::Auto;
  // Called after each pass with the work done and the total, in layer-passes (for a progress bar).
  std::function<void(double done, double total)> progress;
};

struct KvLayerSensitivity {
  int layer_idx = 0;
  std::map<int, DistributionStats> at;  // candidate bits -> this layer alone at those bits vs fp16
};

// Every KV layer, in order. Throws Error(InvalidArgument) for a candidate the model cannot take.
std::vector<KvLayerSensitivity> measure_kv_sensitivity(const model::Model& m, const std::vector<std::vector<int32_t>>& samples,
                                                       const KvCalibrationOptions& opts);

// The samples run with fp16 KV and with `spec` (every layer at once), compared position by position.
DistributionStats compare_kv_spec(const model::Model& m, const std::vector<std::vector<int32_t>>& samples, const kv::KvSpec& spec);
// The same for several specs, running the fp16 reference once per sample.
std::vector<DistributionStats> compare_kv_specs(const model::Model& m, const std::vector<std::vector<int32_t>>& samples,
                                                const std::vector<kv::KvSpec>& specs);

}  // namespace optiq::engine
