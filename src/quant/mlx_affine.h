#pragma once
// MLX "affine" quantization (mx.quantize mode "affine"), bit-exact with MLX for f32 input.
//
// Per group of `group_size` consecutive elements along a row (all math in f32):
//   wmax, wmin = max/min of the group; n = 2^bits - 1
//   s = max((wmax - wmin) / n, 1e-7)
//   if |wmin| > |wmax|: edge = wmin, s stays positive, else edge = wmax and s = -s (NEGATIVE scale)
//   q0 = rint(edge / s); if q0 != 0: s = edge / q0, bias = edge, else bias = 0
//   q = clamp(rint((w - bias) / s), 0, n)        (rint = round half to even)
//   dequantized: w' = s * q + bias
//
// What ml-explore/mlx does about the scale dtype (read in mlx/backend/cpu/quantized.cpp `quantize`):
// the group min/max, the scale, q0 and the bias are all computed in f32 (the input is converted to
// float first), every q is computed with those f32 values, and only at the very end the scale and the
// bias are cast to the output dtype (= the input dtype: f16/bf16/f32). So q is NOT recomputed against
// the rounded scale. For f32 input nothing is rounded. For bf16/f16 input, MLX's result equals ours
// applied to the (exactly representable) input values followed by store_params(..., BF16/F16).
// (Older MLX builds ran an ops-graph fallback that did the arithmetic in the input dtype; for f32
// input that gives the same numbers.)
//
// Bit packing: an LSB-first bit stream over little-endian bytes; value k occupies stream bits
// [k*bits, (k+1)*bits). For bits 2/4/8 this is "element j of u32 word at bits j*bits"; for 3/5/6 values
// straddle byte and word boundaries. A row of n values takes n*bits/8 bytes.
//
// Supported: bits in {2,3,4,5,6,8}; group_size a power of two >= 8 (MLX itself allows 32/64/128; 8 and
// 16 are our extension for tiny models whose head_dim is 8 or 16, e.g. for a quantized KV cache).
#include <cstddef>
#include <cstdint>

#include "util/dtype.h"

namespace optiq::quant {

bool mlx_bits_supported(int bits);
bool mlx_group_size_supported(int group_size);

// Bytes for n packed values (n*bits must be a multiple of 8; true whenever n is a multiple of 8).
inline size_t mlx_packed_bytes(int64_t n, int bits) { return size_t(n) * size_t(bits) / 8; }

struct AffineParams {
  float scale = 0.0f;
  float bias = 0.0f;
};

// Quantizes one group w[0..group_size) to q[0..group_size) (values in [0, 2^bits-1]).
AffineParams quantize_group(const float* w, int group_size, int bits, uint8_t* q);

// Bit stream packing of n values (n*bits multiple of 8). Values must fit in `bits` (checked in pack).
void pack_bits(const uint8_t* q, int64_t n, int bits, uint8_t* packed);
void unpack_bits(const uint8_t* packed, int64_t n, int bits, uint8_t* q);

// One row of n values (n multiple of group_size): packed[n*bits/8 bytes], scales/biases[n/group_size].
// `packed` may be a uint32 array cast to bytes (little-endian words = the same stream).
void quantize_row(const float* w, int64_t n, int bits, int group_size, uint8_t* packed, float* scales,
                  float* biases);
// rows x cols matrix, rows stored back to back (row r at packed + r*cols*bits/8 bytes; for cols*bits
// a multiple of 32 that is exactly MLX's uint32 [rows, cols*bits/32] layout).
void quantize_matrix(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     uint8_t* packed, float* scales, float* biases);

// Reference dequantization of one row from f32 scales/biases.
void dequantize_row(const uint8_t* packed, const float* scales, const float* biases, int64_t n,
                    int bits, int group_size, float* out);
// Same, scales/biases stored as F32, F16 or BF16 (raw little-endian bytes).
void dequantize_row(const uint8_t* packed, const uint8_t* scales, const uint8_t* biases,
                    DType param_dtype, int64_t n, int bits, int group_size, float* out);

// Storing/loading the per-group parameters in a given dtype (F32, F16, BF16; round to nearest even).
size_t param_bytes(DType dtype);  // 4 or 2
void store_params(const float* in, int64_t n, DType dtype, uint8_t* out);
void load_params(const uint8_t* in, int64_t n, DType dtype, float* out);
float load_param(const uint8_t* in, int64_t i, DType dtype);

}  // namespace optiq::quant
