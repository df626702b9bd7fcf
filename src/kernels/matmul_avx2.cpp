// AVX2 float path: F32 / F16 / BF16 weights (exact f32 products, f32 accumulation; only the summation
// order differs from matmul_ref), plus the generic fallback for quantized layouts the int8 path does
// not take (MLX affine with group_size < 32): dequantize a block of rows to f32, then the F32 kernel.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"

namespace optiq::kernels::detail {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

struct LoadF32 {
  static constexpr int kElemBytes = 4;
  static __m256 load8(const uint8_t* row, int64_t k) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  static float load1(const uint8_t* row, int64_t k) {
    float f;
    std::memcpy(&f, row + 4 * k, 4);
    return f;
  }
};

struct LoadF16 {
  static constexpr int kElemBytes = 2;
  static __m256 load8(const uint8_t* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static float load1(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    return _cvtsh_ss(h);
  }
};

struct LoadBF16 {
  static constexpr int kElemBytes = 2;
  static __m256 load8(const uint8_t* row, int64_t k) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float load1(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// out[i][c] = dot(row i, x row c) for RW weight rows and NX x rows.
template <class L, int RW, int NX>
inline void tile(const uint8_t* const* wrows, const float* const* xs, int64_t cols, float* out,
                 int64_t out_stride_c) {
  constexpr int U = (RW * NX <= 2) ? 2 : 1;  // independent FMA chains for the small tiles
  __m256 acc[U][RW][NX];
  for (int u = 0; u < U; ++u)
    for (int i = 0; i < RW; ++i)
      for (int c = 0; c < NX; ++c) acc[u][i][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 * U <= cols; k += 8 * U) {
    if (NX <= 2)
      for (int i = 0; i < RW; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(wrows[i]) + k * L::kElemBytes + 1536,
                     _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      __m256 wv[RW];
      for (int i = 0; i < RW; ++i) wv[i] = L::load8(wrows[i], k + 8 * u);
      for (int c = 0; c < NX; ++c) {
        const __m256 xv = _mm256_loadu_ps(xs[c] + k + 8 * u);
        for (int i = 0; i < RW; ++i) acc[u][i][c] = _mm256_fmadd_ps(wv[i], xv, acc[u][i][c]);
      }
    }
  }
  for (; k + 8 <= cols; k += 8) {
    __m256 wv[RW];
    for (int i = 0; i < RW; ++i) wv[i] = L::load8(wrows[i], k);
    for (int c = 0; c < NX; ++c) {
      const __m256 xv = _mm256_loadu_ps(xs[c] + k);
      for (int i = 0; i < RW; ++i) acc[0][i][c] = _mm256_fmadd_ps(wv[i], xv, acc[0][i][c]);
    }
  }
  for (int i = 0; i < RW; ++i) {
    for (int c = 0; c < NX; ++c) {
      __m256 a = acc[0][i][c];
      for (int u = 1; u < U; ++u) a = _mm256_add_ps(a, acc[u][i][c]);
      float s = hsum(a);
      for (int64_t kk = k; kk < cols; ++kk) s += L::load1(wrows[i], kk) * xs[c][kk];
      out[c * out_stride_c + i] = s;
    }
  }
}

template <class L, int NX>
inline void rows_x_tile(const uint8_t* base, size_t row_bytes, int64_t r0, int64_t r1,
                        const float* const* xs, int64_t cols, float* y, int64_t rows_total) {
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    const uint8_t* wr[2] = {base + size_t(r) * row_bytes, base + size_t(r + 1) * row_bytes};
    tile<L, 2, NX>(wr, xs, cols, y + r, rows_total);
  }
  if (r < r1) {
    const uint8_t* wr[1] = {base + size_t(r) * row_bytes};
    tile<L, 1, NX>(wr, xs, cols, y + r, rows_total);
  }
}

// y[c, r] for r in [r0, r1) and every x row; weights are rows of `base` with stride row_bytes.
template <class L>
void float_rows(const uint8_t* base, size_t row_bytes, int64_t r0, int64_t r1, const float* x,
                int64_t n, int64_t cols, float* y, int64_t rows_total) {
  int64_t c = 0;
  const float* xs[4];
  for (; c + 4 <= n; c += 4) {
    for (int j = 0; j < 4; ++j) xs[j] = x + (c + j) * cols;
    rows_x_tile<L, 4>(base, row_bytes, r0, r1, xs, cols, y + c * rows_total, rows_total);
  }
  const int64_t rem = n - c;
  for (int j = 0; j < rem; ++j) xs[j] = x + (c + j) * cols;
  float* yc = y + c * rows_total;
  if (rem == 3) rows_x_tile<L, 3>(base, row_bytes, r0, r1, xs, cols, yc, rows_total);
  if (rem == 2) rows_x_tile<L, 2>(base, row_bytes, r0, r1, xs, cols, yc, rows_total);
  if (rem == 1) rows_x_tile<L, 1>(base, row_bytes, r0, r1, xs, cols, yc, rows_total);
}

int64_t rows_per_block(size_t row_bytes) {
  int64_t rb = int64_t((96 * 1024) / (row_bytes ? row_bytes : 1));
  rb = std::max<int64_t>(2, std::min<int64_t>(64, rb));
  return rb & ~int64_t(1);
}

template <class L>
void float_matmul(const WeightView& w, const float* x, int64_t n, float* y) {
  const int threads = threads_for_float(w, n);
  int64_t rb = n == 1 ? 64 : rows_per_block(w.row_bytes);
  // At least a chunk per thread (an A has only `rank` rows).
  if (threads > 1) rb = std::clamp<int64_t>(((w.rows + threads - 1) / threads + 1) & ~int64_t(1), 2, rb);
  parallel_chunks(w.rows, rb, threads, [&](int64_t r0, int64_t r1) {
    float_rows<L>(w.data, w.row_bytes, r0, r1, x, n, w.cols, y, w.rows);
  });
}

// Any format: dequantize rows [r0, r1) into f32 (scalar reference), then the F32 kernel.
void dequant_fallback(const WeightView& w, const float* x, int64_t n, float* y) {
  const int threads = threads_for(double(w.rows) * double(w.cols) * double(n));
  const int64_t rb = rows_per_block(size_t(w.cols) * 4);
  parallel_chunks(w.rows, rb, threads, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    buf.resize(size_t((r1 - r0) * w.cols));
    for (int64_t r = r0; r < r1; ++r) dequantize_row_scalar(w, r, buf.data() + (r - r0) * w.cols);
    const uint8_t* base = reinterpret_cast<const uint8_t*>(buf.data());
    // Rows of buf are indexed from 0: shift y so that row r0 lands at y + r0.
    float_rows<LoadF32>(base, size_t(w.cols) * 4, 0, r1 - r0, x, n, w.cols, y + r0, w.rows);
  });
}

// Columns [c0, c1) of y[n, cols] = x[n, rows] · W: 32 columns at a time in four accumulators per x row,
// summed over the rows in order (the reference's order; FMA rounding only).
template <class L>
void kn_columns(const WeightView& w, const float* x, int64_t n, float* y, int64_t c0, int64_t c1, float alpha) {
  const int64_t rows = w.rows, cols = w.cols;
  int64_t c = c0;
  for (; c + 32 <= c1; c += 32)
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * rows;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t k = 0; k < rows; ++k) {
        const uint8_t* row = w.data + size_t(k) * w.row_bytes;
        const __m256 xv = _mm256_broadcast_ss(xi + k);
        a0 = _mm256_fmadd_ps(xv, L::load8(row, c), a0);
        a1 = _mm256_fmadd_ps(xv, L::load8(row, c + 8), a1);
        a2 = _mm256_fmadd_ps(xv, L::load8(row, c + 16), a2);
        a3 = _mm256_fmadd_ps(xv, L::load8(row, c + 24), a3);
      }
      float* yi = y + i * cols + c;
      const __m256 av = _mm256_set1_ps(alpha);
      _mm256_storeu_ps(yi, _mm256_fmadd_ps(av, a0, _mm256_loadu_ps(yi)));
      _mm256_storeu_ps(yi + 8, _mm256_fmadd_ps(av, a1, _mm256_loadu_ps(yi + 8)));
      _mm256_storeu_ps(yi + 16, _mm256_fmadd_ps(av, a2, _mm256_loadu_ps(yi + 16)));
      _mm256_storeu_ps(yi + 24, _mm256_fmadd_ps(av, a3, _mm256_loadu_ps(yi + 24)));
    }
  for (; c < c1; ++c)
    for (int64_t i = 0; i < n; ++i) {
      float acc = 0.0f;
      for (int64_t k = 0; k < rows; ++k) acc = std::fma(x[i * rows + k], L::load1(w.data + size_t(k) * w.row_bytes, c), acc);
      y[i * cols + c] = std::fma(alpha, acc, y[i * cols + c]);
    }
}

template <class L>
void float_lowrank_add(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y) {
  thread_local std::vector<float> t;
  t.resize(size_t(n * a.rows));
  const int threads = std::max(threads_for_float(a, n), threads_for_float(b, n));
  if (threads <= 1) {
    float_rows<L>(a.data, a.row_bytes, 0, a.rows, x, n, a.cols, t.data(), a.rows);
    kn_columns<L>(b, t.data(), n, y, 0, b.cols, alpha);
    return;
  }
  float* tp = t.data();
#pragma omp parallel num_threads(threads)
  {
    const int ti = omp_get_thread_num(), nt = omp_get_num_threads();
    const auto [r0, r1] = thread_share(a.rows, 2, ti, nt);
    if (r0 < r1) float_rows<L>(a.data, a.row_bytes, r0, r1, x, n, a.cols, tp, a.rows);
#pragma omp barrier
    const auto [c0, c1] = thread_share(b.cols, 32, ti, nt);
    if (c0 < c1) kn_columns<L>(b, tp, n, y, c0, c1, alpha);
  }
}

}  // namespace

void lowrank_add_avx2(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y) {
  switch (a.format) {
    case WeightFormat::F32: return float_lowrank_add<LoadF32>(a, b, x, n, alpha, y);
    case WeightFormat::F16: return float_lowrank_add<LoadF16>(a, b, x, n, alpha, y);
    default: return float_lowrank_add<LoadBF16>(a, b, x, n, alpha, y);
  }
}

void matmul_avx2(const WeightView& w, const float* x, int64_t n, float* y) {
  switch (w.format) {
    case WeightFormat::F32: return float_matmul<LoadF32>(w, x, n, y);
    case WeightFormat::F16: return float_matmul<LoadF16>(w, x, n, y);
    case WeightFormat::BF16: return float_matmul<LoadBF16>(w, x, n, y);
    default: break;
  }
  if (qmatmul_avx2_supported(w)) return qmatmul_avx2(w, x, n, y);
  dequant_fallback(w, x, n, y);
}

}  // namespace optiq::kernels::detail
