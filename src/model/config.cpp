#include "model/config.h"

#include <algorithm>
#include <cmath>

namespace optiq::model {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int dims = c.rope_dims > 0 ? c.rope_dims : c.head_dim;
  const int half = dims / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i)
    inv[i] = float(1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(dims)));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    for (auto& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    const double orig = s.original_max_position_embeddings ? s.original_max_position_embeddings : 8192;
    const double low_wavelen = orig / s.low_freq_factor;
    const double high_wavelen = orig / s.high_freq_factor;
    for (auto& f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f = float(f / s.factor);
      } else {
        double smooth = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = float((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  } else if (s.type == "yarn") {
    // YaRN: blend interpolated and extrapolated frequencies by a linear ramp over dimension index.
    const double orig = s.original_max_position_embeddings ? s.original_max_position_embeddings : c.max_position_embeddings;
    auto correction_dim = [&](double rot) {
      return (dims * std::log(orig / (rot * 2 * M_PI))) / (2 * std::log(double(c.rope_theta)));
    };
    double low = std::floor(correction_dim(s.beta_fast));
    double high = std::ceil(correction_dim(s.beta_slow));
    low = std::max(low, 0.0);
    high = std::min(high, double(dims - 1));
    if (low == high) high += 0.001;
    for (int i = 0; i < half; ++i) {
      double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      double extrap_w = 1.0 - ramp;
      double interp = inv[i] / s.factor;
      inv[i] = float(interp * (1 - extrap_w) + inv[i] * extrap_w);
    }
  }
  return inv;
}

}  // namespace optiq::model
