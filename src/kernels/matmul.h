#pragma once
// y[n, rows] = x[n, cols] · Wᵀ for every weight format. x and y are f32, row-major, contiguous.
// Multi-threaded inside (OpenMP over output rows). Dispatches on active_isa(): AVX2 path when available,
// the scalar reference otherwise; both are callable directly so tests compare them.
//
// Accuracy of matmul() against matmul_ref() (the oracle: dequantize to f32, f32 dot):
//  - F32/F16/BF16 (and MLX affine with group_size < 32): exact products, f32 accumulation; only the
//    summation order differs (~1e-6 relative to Σ|w·x|).
//  - Quantized formats on AVX2 (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, MLX affine gs >= 32): x is quantized per
//    32-element block to int8 (dx_b = max|x_b|/127, round to nearest) and dotted with integer weights
//    (maddubs/madd). Each block is seen as w_i = ws_b·q_i + wb_b with wb_b the block offset
//    (Q4_0: -8d, Q4_1: m, Q4_K: -dmin·m_j, MLX: bias (+128·scale at 8 bits), Q8_0/Q6_K: 0); the offset
//    term uses the exact f32 Σx_b. Added error per output:
//        |matmul - matmul_ref| <= Σ_b (dx_b / 2) · Σ_{i∈b} |w_i - wb_b|   (+ f32 rounding)
//    (a worst-case bound: per-element rounding errors are independent and mostly cancel). Same class
//    of error as llama.cpp's Q8 activations. tests/kernels/matmul_test.cpp checks exactly this bound.
//    The n == 1 kernels for MLX 4-bit and Q4_0 (qmatmul_avx2.cpp, "decode") use the same int8
//    activations and integer dots, so the same bound holds; only the f32 summation order differs.
#include <functional>
#include <memory>

#include "kernels/weight.h"
#include "util/large_buffer.h"

namespace optiq::kernels {

void matmul(const WeightView& w, const float* x, int64_t n, float* y);
void matmul_ref(const WeightView& w, const float* x, int64_t n, float* y);  // scalar reference

// A low-rank update (a LoRA delta) of one output of matmul_shared_x, y[i] += alpha · (x[i] · a) · b for the
// listed rows i of x (all of them when rows is null): a stored [in, r] (a = Aᵀ), b stored [r, out] (b = Bᵀ),
// a and b alike F32, F16 or BF16. The rank (8-64) is the short side of both: as dots it would be mostly
// horizontal sums, so both are read as rows of r (or out) weights, each weight one FMA into a vector of
// outputs. x · a is summed in blocks of kLowRankBlock rows of a, the blocks' sums then added in order: the same
// numbers for any thread count and for a row alone or in a batch.
constexpr int64_t kLowRankBlock = 128;
struct LowRank {
  WeightView a, b;
  float alpha = 1.0f;
  int out = 0;                    // the output (index into ys) it adds to
  const int64_t* rows = nullptr;  // the rows of x (and of y) it applies to, or null for all
  int64_t n_rows = 0;
};

// Rows of x made inside a matmul's own parallel region, just before anything reads them: prep(r0, r1) writes
// rows [r0, r1) of x (the memory the matmul's x points to), each thread its share, and every row is written
// before any weight or low-rank term reads x. A caller's per-row step (a residual add and a norm, an activation)
// then needs no parallel region of its own.
using RowPrep = std::function<void(int64_t r0, int64_t r1)>;

// y_i = W_i x for i < count, weights that read the same x (q, k and v; gate and up), plus the low-rank
// terms lr[0..lr_count), x first made by prep when given. At one row in the 4-bit formats (MLX 4-bit, Q4_0)
// x is quantized once, and the rows of all the weights and then all the terms are split over the threads in
// one parallel region; otherwise one matmul each, then the terms together in one region. The same numbers as matmul and
// lowrank_add, each (the terms are added in order, before any bias the caller adds).
void matmul_shared_x(const WeightView* ws, float* const* ys, int count, const float* x, int64_t n,
                     const LowRank* lr = nullptr, int lr_count = 0, const RowPrep* prep = nullptr);

// One low-rank update of all n rows: y[n, b.cols] += alpha · (x[n, a.rows] · a) · b, both products in one
// parallel region (threaded from 32 KB of weights: memory-bound), the second added straight into y.
void lowrank_add(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y);
void lowrank_add_ref(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y);

// Repacking w (Q4_0, or MLX 4-bit with groups of a multiple of 32) for the packed 4-bit kernel (AVX2, and AVX-512
// VNNI where the CPU has it: the same numbers): rows in groups of 16, each group's 4-bit codes interleaved so
// that one vpdpbusd (or two maddubs) multiplies 4 weights of each of the 16 (8) rows by 4 activations, with the group's scales (and biases) stored before its codes. A
// packed matrix gives the same numbers for a row of x alone or in a batch of any size (its own summation order,
// within the error bound above). OPTIQ_PACK=0 in the environment turns it off (A/B runs; the memory of the
// second copy).
// The bytes w's packed copy takes; 0 where the format, the shape or the CPU does not take it.
size_t packed_bytes(const WeightView& w);
// Packs w into dst (packed_bytes(w) bytes, 64-byte aligned, which must outlive every use of w) and sets
// w.packed. It runs on the calling thread alone; different matrices may be packed on different threads at once.
void pack_weight(WeightView& w, uint8_t* dst);
// The same into a buffer of its own (null, w left alone, where packed_bytes(w) is 0).
std::shared_ptr<const LargeBuffer> pack_weight(WeightView& w);

// Dequantize row r of w into out[cols] (embedding lookup, tests).
void dequantize_row(const WeightView& w, int64_t r, float* out);

}  // namespace optiq::kernels
