#include "kernels/weight.h"

namespace optiq::kernels {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::F32: return "f32";
    case WeightFormat::F16: return "f16";
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::MlxAffine: return "mlx-affine";
    case WeightFormat::Q4_0: return "q4_0";
    case WeightFormat::Q4_1: return "q4_1";
    case WeightFormat::Q8_0: return "q8_0";
    case WeightFormat::Q4_K: return "q4_k";
    case WeightFormat::Q6_K: return "q6_k";
  }
  return "?";
}

}  // namespace optiq::kernels
