#pragma once
// y[n, rows] = x[n, cols] · Wᵀ for every weight format. x and y are f32, row-major, contiguous.
// Multi-threaded inside (OpenMP over output rows). Dispatches on active_isa(): AVX2 path when available,
// the scalar reference otherwise; both are callable directly so tests compare them.
#include "kernels/weight.h"

namespace optiq::kernels {

void matmul(const WeightView& w, const float* x, int64_t n, float* y);
void matmul_ref(const WeightView& w, const float* x, int64_t n, float* y);  // scalar reference

// Dequantize row r of w into out[cols] (embedding lookup, tests).
void dequantize_row(const WeightView& w, int64_t r, float* out);

}  // namespace optiq::kernels
