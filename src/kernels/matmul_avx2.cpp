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

// y[c, r] for r in [r0, r1) and every x row; weights are rows of `base` with stride row_bytes. x row c is
// x + xrow(c) * cols, with xrow(c) = xrows[c] when xrows is given, c otherwise.
template <class L>
void float_rows(const uint8_t* base, size_t row_bytes, int64_t r0, int64_t r1, const float* x,
                int64_t n, int64_t cols, float* y, int64_t rows_total, const int64_t* xrows = nullptr) {
  auto xrow = [&](int64_t c) { return x + (xrows ? xrows[c] : c) * cols; };
  int64_t c = 0;
  const float* xs[4];
  for (; c + 4 <= n; c += 4) {
    for (int j = 0; j < 4; ++j) xs[j] = xrow(c + j);
    rows_x_tile<L, 4>(base, row_bytes, r0, r1, xs, cols, y + c * rows_total, rows_total);
  }
  const int64_t rem = n - c;
  for (int j = 0; j < rem; ++j) xs[j] = xrow(c + j);
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

// Columns [c0, c1) of y[n, cols] += alpha · x[n, rows] · W: 32 columns at a time in four accumulators per
// x row, summed over the rows in order (the reference's order; FMA rounding only). Row i of the product goes
// to y row yrows[i] when yrows is given, row i otherwise.
template <class L>
void kn_columns(const WeightView& w, const float* x, int64_t n, float* y, int64_t c0, int64_t c1, float alpha,
                const int64_t* yrows) {
  const int64_t rows = w.rows, cols = w.cols;
  auto yrow = [&](int64_t i) { return y + (yrows ? yrows[i] : i) * cols; };
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
      float* yi = yrow(i) + c;
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
      float* yi = yrow(i) + c;
      *yi = std::fma(alpha, acc, *yi);
    }
}

// The loader of a low-rank pair's format, as an argument: f(LoadF16{}).
template <class F>
void with_loader(const LowRank& l, F&& f) {
  switch (l.a.format) {
    case WeightFormat::F32: return f(LoadF32{});
    case WeightFormat::F16: return f(LoadF16{});
    default: return f(LoadBF16{});
  }
}

}  // namespace

LowRankRun::LowRankRun(const LowRank* lr, int lr_count, const WeightView* ws, float* const* ys, const float* x,
                       int64_t n)
    : x_(x) {
  int64_t t_size = 0;
  for (int i = 0; i < lr_count; ++i) {
    const LowRank& l = lr[i];
    const int64_t rows = l.rows ? l.n_rows : n;
    if (rows <= 0 || l.a.rows == 0) continue;
    int64_t y_row0 = 0;
    for (int j = 0; ws && j < l.out; ++j) y_row0 += ws[j].rows;
    terms_.push_back({&l, ys[l.out], rows, a_rows_, t_size, y_row0});
    a_rows_ += l.a.rows;
    t_size += rows * l.a.rows;
    if (std::max(threads_for_float(l.a, rows), threads_for_float(l.b, rows)) > 1) threads_ = compute_threads();
  }
  thread_local std::vector<float> t;  // x aᵀ of every term (the constructing thread's; the region shares it)
  t.resize(size_t(t_size));
  t_ = t.data();
}

void LowRankRun::phase_a(int ti, int nt) const {
  const auto [g0, g1] = thread_share(a_rows_, 2, ti, nt);
  for (const Term& tm : terms_) {
    const WeightView& a = tm.lr->a;
    const int64_t r0 = std::max(g0, tm.a_row0) - tm.a_row0, r1 = std::min(g1, tm.a_row0 + a.rows) - tm.a_row0;
    if (r0 >= r1) continue;
    with_loader(*tm.lr, [&](auto l) {
      float_rows<decltype(l)>(a.data, a.row_bytes, r0, r1, x_, tm.rows, a.cols, t_ + tm.t0, a.rows, tm.lr->rows);
    });
  }
  a_done_.fetch_add(1, std::memory_order_release);
}

void LowRankRun::wait_a(int nt) const {
  while (a_done_.load(std::memory_order_acquire) < nt) _mm_pause();
}

void LowRankRun::add_columns(const Term& tm, int64_t c0, int64_t c1) const {
  if (c0 >= c1) return;
  with_loader(*tm.lr, [&](auto l) { kn_columns<decltype(l)>(tm.lr->b, t_ + tm.t0, tm.rows, tm.y, c0, c1, tm.lr->alpha, tm.lr->rows); });
}

void LowRankRun::phase_b(int ti, int nt) const {
  wait_a(nt);
  for (const Term& tm : terms_) {
    const auto [c0, c1] = thread_share(tm.lr->b.cols, 32, ti, nt);
    add_columns(tm, c0, c1);
  }
}

void LowRankRun::phase_b_rows(int nt, int64_t g0, int64_t g1) const {
  wait_a(nt);
  for (const Term& tm : terms_)
    add_columns(tm, std::max(g0, tm.y_row0) - tm.y_row0, std::min(g1, tm.y_row0 + tm.lr->b.cols) - tm.y_row0);
}

void LowRankRun::run() const {
  if (terms_.empty()) return;
  if (threads_ <= 1 || omp_in_parallel()) {
    phase_a(0, 1);
    phase_b(0, 1);
    return;
  }
#pragma omp parallel num_threads(threads_)
  {
    const int ti = omp_get_thread_num(), nt = omp_get_num_threads();
    phase_a(ti, nt);
    phase_b(ti, nt);
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
