#pragma once
// ggml block formats (GGUF tensor data), laid out byte for byte as in ggml-common.h. A row of n weights
// is n / QK consecutive blocks. Half floats are raw IEEE fp16 bits (little-endian).
//
//   Q4_0 (32 w): w[j] = d*((qs[j]&15)-8), w[j+16] = d*((qs[j]>>4)-8)
//   Q4_1 (32 w): w[j] = d*(qs[j]&15) + m, w[j+16] = d*(qs[j]>>4) + m
//   Q8_0 (32 w): w[j] = d*qs[j]
//   Q4_K (256 w): 8 sub-blocks of 32, 6-bit (sc, m) each: w = d*sc*q - dmin*m (q 4-bit)
//   Q6_K (256 w): 16 sub-blocks of 16, int8 scale each: w = d*sc*(q-32) (q 6-bit)
#include <cstddef>
#include <cstdint>

namespace optiq::quant {

constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK_K = 256;

struct BlockQ4_0 {
  uint16_t d;          // f16
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d;          // f16
  uint16_t m;          // f16
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;          // f16
  int8_t qs[32];
};
struct BlockQ4_K {
  uint16_t d;          // f16, super-block scale of the quantized scales
  uint16_t dmin;       // f16, super-block scale of the quantized mins
  uint8_t scales[12];  // 8 x (6-bit scale, 6-bit min), packed
  uint8_t qs[128];     // 4-bit quants: chunk c (64 w) = qs[32c..32c+31], low nibbles then high nibbles
};
struct BlockQ6_K {
  uint8_t ql[128];     // low 4 bits
  uint8_t qh[64];      // high 2 bits
  int8_t scales[16];   // one per 16 weights
  uint16_t d;          // f16
};

static_assert(sizeof(BlockQ4_0) == 18, "BlockQ4_0 size");
static_assert(sizeof(BlockQ4_1) == 20, "BlockQ4_1 size");
static_assert(sizeof(BlockQ8_0) == 34, "BlockQ8_0 size");
static_assert(sizeof(BlockQ4_K) == 144, "BlockQ4_K size");
static_assert(sizeof(BlockQ6_K) == 210, "BlockQ6_K size");

// Q4_K 6-bit (scale, min) of sub-block j (0..7).
void q4_k_scale_min(const uint8_t* scales12, int j, uint8_t* sc, uint8_t* m);

// Reference dequantization of n weights (n multiple of the block size).
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n);

// Quantization. Q4_0/Q4_1/Q8_0 follow ggml's reference rounding (quantize_row_*_ref):
//   Q8_0: d = amax/127, q = round(x/d) (half away from zero), d stored as f16.
//   Q4_0: mx = the signed value of largest magnitude, d = mx/-8, q = min(15, (int8)(x/d + 8.5)).
//   Q4_1: d = (max-min)/15, q = min(15, (int8)((x-min)/d + 0.5)), m = min.
// Q4_K/Q6_K: a simple round-to-nearest quantizer producing valid blocks (NOT ggml's iterative search:
// the error is somewhat larger than llama-quantize's, fine for tests and benchmark models).
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n);
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q4_k(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q6_k(const float* x, BlockQ6_K* y, int64_t n);

}  // namespace optiq::quant
