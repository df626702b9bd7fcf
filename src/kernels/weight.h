#pragma once
// A weight matrix as the kernels see it: [rows = out_features, cols = in_features], each row stored
// independently in one of the supported formats, used in place (mmap'd), never dequantized as a whole.
#include <cstddef>
#include <cstdint>

#include "util/dtype.h"

namespace optiq::kernels {

enum class WeightFormat : uint8_t {
  F32, F16, BF16,
  MlxAffine,  // MLX affine groups: packed U32 words + per-group scale and bias (F16/BF16/F32)
  Q4_0, Q4_1, Q8_0, Q4_K, Q6_K,  // ggml blocks along the row
};

const char* weight_format_name(WeightFormat f);

struct WeightView {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0;            // out features
  int64_t cols = 0;            // in features (logical, unpacked)
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;        // stride between rows of `data`
  // MlxAffine only: bits in {2,3,4,5,6,8}; group_size divides cols; scales/biases [rows, cols/group_size].
  int bits = 0;
  int group_size = 0;
  DType scale_dtype = DType::F32;
  const uint8_t* scales = nullptr;
  const uint8_t* biases = nullptr;
  // The same matrix repacked for this CPU's 4-bit kernel (pack_weight in matmul.h), or null. The kernels use
  // it where it is set and that kernel is active; data, scales and biases stay valid (embedding lookups).
  const uint8_t* packed = nullptr;

  // Rows [first, first + n) as a view of their own (one expert of a stack, half of a fused matrix).
  WeightView row_slice(int64_t first, int64_t n) const {
    WeightView v = *this;
    v.rows = n;
    v.data = data + size_t(first) * row_bytes;
    v.packed = nullptr;  // packed rows come in groups of 16: a slice runs on the rows as stored
    if (format == WeightFormat::MlxAffine) {
      const size_t off = size_t(first) * size_t(cols / group_size) * size_t(dtype_block_bytes(scale_dtype));
      v.scales = scales + off;
      v.biases = biases + off;
    }
    return v;
  }
};

}  // namespace optiq::kernels
