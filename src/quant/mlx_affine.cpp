#include "quant/mlx_affine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "util/error.h"
#include "util/half.h"

namespace optiq::quant {

bool mlx_bits_supported(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}

bool mlx_group_size_supported(int group_size) {
  return group_size >= 8 && group_size <= 1024 && (group_size & (group_size - 1)) == 0;
}

AffineParams quantize_group(const float* w, int group_size, int bits, uint8_t* q) {
  const float n_bins = float((1 << bits) - 1);
  const float eps = 1e-7f;
  float w_min = std::numeric_limits<float>::infinity();
  float w_max = -w_min;
  for (int j = 0; j < group_size; ++j) {
    w_max = std::max(w_max, w[j]);
    w_min = std::min(w_min, w[j]);
  }
  const bool mask = std::fabs(w_min) > std::fabs(w_max);
  float scale = std::max((w_max - w_min) / n_bins, eps);
  scale = mask ? scale : -scale;
  const float edge = mask ? w_min : w_max;
  const float q0 = std::rint(edge / scale);
  float bias = 0.0f;
  if (q0 != 0.0f) {
    scale = edge / q0;
    bias = edge;
  }
  for (int j = 0; j < group_size; ++j) {
    float v = std::rint((w[j] - bias) / scale);
    v = std::min(std::max(v, 0.0f), n_bins);
    q[j] = uint8_t(v);  // NaN input is undefined behaviour in MLX too; v is in [0, n_bins] otherwise
  }
  return {scale, bias};
}

void pack_bits(const uint8_t* q, int64_t n, int bits, uint8_t* packed) {
  OPTIQ_CHECK(mlx_bits_supported(bits), "unsupported bits");
  OPTIQ_CHECK((n * bits) % 8 == 0, "n*bits must be a multiple of 8");
  const uint32_t mask = (1u << bits) - 1;
  std::memset(packed, 0, size_t(n * bits / 8));
  for (int64_t k = 0; k < n; ++k) {
    OPTIQ_CHECK((q[k] & ~mask) == 0, "value does not fit in bits");
    const int64_t bit = k * bits;
    const uint32_t v = uint32_t(q[k]) << (bit & 7);  // at most 7 + 8 = 15 bits: two bytes
    packed[bit >> 3] |= uint8_t(v);
    if ((bit & 7) + bits > 8) packed[(bit >> 3) + 1] |= uint8_t(v >> 8);
  }
}

void unpack_bits(const uint8_t* packed, int64_t n, int bits, uint8_t* q) {
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t bit = k * bits;
    uint32_t v = packed[bit >> 3];
    if ((bit & 7) + bits > 8) v |= uint32_t(packed[(bit >> 3) + 1]) << 8;
    q[k] = uint8_t((v >> (bit & 7)) & mask);
  }
}

void quantize_row(const float* w, int64_t n, int bits, int group_size, uint8_t* packed, float* scales,
                  float* biases) {
  OPTIQ_CHECK(mlx_bits_supported(bits), "unsupported bits");
  OPTIQ_CHECK(mlx_group_size_supported(group_size), "unsupported group size");
  OPTIQ_CHECK(n % group_size == 0, "row length must be a multiple of group_size");
  uint8_t q[1024];
  const size_t group_bytes = mlx_packed_bytes(group_size, bits);  // whole bytes since gs >= 8
  for (int64_t g = 0; g < n / group_size; ++g) {
    AffineParams p = quantize_group(w + g * group_size, group_size, bits, q);
    scales[g] = p.scale;
    biases[g] = p.bias;
    pack_bits(q, group_size, bits, packed + g * group_bytes);
  }
}

void quantize_matrix(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     uint8_t* packed, float* scales, float* biases) {
  const size_t row_bytes = mlx_packed_bytes(cols, bits);
  const int64_t groups = cols / group_size;
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(w + r * cols, cols, bits, group_size, packed + r * row_bytes, scales + r * groups,
                 biases + r * groups);
}

void dequantize_row(const uint8_t* packed, const float* scales, const float* biases, int64_t n,
                    int bits, int group_size, float* out) {
  uint8_t q[1024];
  const size_t group_bytes = mlx_packed_bytes(group_size, bits);
  for (int64_t g = 0; g < n / group_size; ++g) {
    unpack_bits(packed + g * group_bytes, group_size, bits, q);
    for (int j = 0; j < group_size; ++j) out[g * group_size + j] = scales[g] * float(q[j]) + biases[g];
  }
}

void dequantize_row(const uint8_t* packed, const uint8_t* scales, const uint8_t* biases,
                    DType param_dtype, int64_t n, int bits, int group_size, float* out) {
  uint8_t q[1024];
  const size_t group_bytes = mlx_packed_bytes(group_size, bits);
  for (int64_t g = 0; g < n / group_size; ++g) {
    const float s = load_param(scales, g, param_dtype);
    const float b = load_param(biases, g, param_dtype);
    unpack_bits(packed + g * group_bytes, group_size, bits, q);
    for (int j = 0; j < group_size; ++j) out[g * group_size + j] = s * float(q[j]) + b;
  }
}

size_t param_bytes(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

void store_params(const float* in, int64_t n, DType dtype, uint8_t* out) {
  OPTIQ_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
              "params must be F32, F16 or BF16");
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::F32) {
      std::memcpy(out + 4 * i, &in[i], 4);
    } else {
      const uint16_t h = dtype == DType::F16 ? f32_to_f16(in[i]) : f32_to_bf16(in[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

float load_param(const uint8_t* in, int64_t i, DType dtype) {
  if (dtype == DType::F32) {
    float f;
    std::memcpy(&f, in + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, in + 2 * i, 2);
  return dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

void load_params(const uint8_t* in, int64_t n, DType dtype, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = load_param(in, i, dtype);
}

}  // namespace optiq::quant
