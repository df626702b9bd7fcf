#pragma once
// Shared between matmul.cpp (reference, dispatch) and the *_avx2.cpp files. Not a public API.
#include "util/omp.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/weight.h"
#include "util/cpu.h"

namespace optiq::kernels::detail {

// Elements per block along a row (1 for plain float formats).
int64_t format_block_elems(const WeightView& w);
// Bytes one row needs (the minimum for row_bytes).
size_t format_min_row_bytes(const WeightView& w);
// OPTIQ_CHECKs that the view is consistent (format params, cols multiple of block, pointers).
void check_view(const WeightView& w);

// Scalar reference dequantization of row r (no checks).
void dequantize_row_scalar(const WeightView& w, int64_t r, float* out);

// AVX2 implementation. Only call when detected_isa() == Avx2.
void matmul_avx2(const WeightView& w, const float* x, int64_t n, float* y);    // matmul_avx2.cpp
void lowrank_add_avx2(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y);  // matmul_avx2.cpp
bool qmatmul_avx2_supported(const WeightView& w);                             // qmatmul_avx2.cpp
void qmatmul_avx2(const WeightView& w, const float* x, int64_t n, float* y);   // int8 activations
// One row, several weights over it (matmul_shared_x); false when they do not all take the 4-bit decode path.
bool qmatmul_avx2_decode_shared(const WeightView* ws, float* const* ys, int count, const float* x);

// Threads to use for `macs` multiply-adds: 1 for tiny work or inside a parallel region.
inline int threads_for(double macs) {
  if (omp_in_parallel()) return 1;
  if (macs < 65536.0) return 1;
  return std::max(1, compute_threads());
}

// Threads for a float weight read once per x row: memory-bound, so 32 KB of weights at one row are worth
// every thread (a LoRA adapter's A and B are that small).
inline int threads_for_float(const WeightView& w, int64_t n) {
  if (n == 1 && !omp_in_parallel() && int64_t(w.rows) * int64_t(w.row_bytes) >= 32 * 1024)
    return std::max(1, compute_threads());
  return threads_for(double(w.rows) * double(w.cols) * double(n));
}

// Thread t's contiguous share of [0, count) among nt threads, in whole pieces of `align`.
inline std::pair<int64_t, int64_t> thread_share(int64_t count, int64_t align, int t, int nt) {
  const int64_t units = (count + align - 1) / align;
  return {std::min(count, units * t / nt * align), std::min(count, units * (t + 1) / nt * align)};
}

// Runs f(begin, end) over [0, count) split in chunks of `chunk`, OpenMP static over chunks.
template <class F>
void parallel_chunks(int64_t count, int64_t chunk, int threads, F&& f) {
  const int64_t nchunks = (count + chunk - 1) / chunk;
  if (threads <= 1 || nchunks <= 1) {
    for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(count, (c + 1) * chunk));
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(count, (c + 1) * chunk));
}

}  // namespace optiq::kernels::detail
