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

// part[c] += Σ_{i in [i0, i1)} x[i] · a[i, c] for the CH·8 columns from c0: U rows at a time in their own
// accumulators (U FMA chains per column vector), then the U sums added in order.
template <class L, int CH>
inline void kn_block_columns(const uint8_t* base, size_t row_bytes, int64_t c0, int64_t i0, int64_t i1,
                             const float* x, float* part) {
  constexpr int U = CH <= 2 ? 4 : 2;
  __m256 acc[U][CH];
  for (int u = 0; u < U; ++u)
    for (int ch = 0; ch < CH; ++ch) acc[u][ch] = _mm256_setzero_ps();
  int64_t i = i0;
  for (; i + U <= i1; i += U) {
    _mm_prefetch(reinterpret_cast<const char*>(base + size_t(i) * row_bytes) + 1024, _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      const uint8_t* row = base + size_t(i + u) * row_bytes;
      const __m256 xv = _mm256_broadcast_ss(x + i + u);
      for (int ch = 0; ch < CH; ++ch) acc[u][ch] = _mm256_fmadd_ps(xv, L::load8(row, c0 + 8 * ch), acc[u][ch]);
    }
  }
  for (; i < i1; ++i) {
    const uint8_t* row = base + size_t(i) * row_bytes;
    const __m256 xv = _mm256_broadcast_ss(x + i);
    for (int ch = 0; ch < CH; ++ch) acc[0][ch] = _mm256_fmadd_ps(xv, L::load8(row, c0 + 8 * ch), acc[0][ch]);
  }
  for (int ch = 0; ch < CH; ++ch) {
    __m256 v = acc[0][ch];
    for (int u = 1; u < U; ++u) v = _mm256_add_ps(v, acc[u][ch]);
    _mm256_storeu_ps(part + c0 + 8 * ch, v);
  }
}

#define OPTIQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
// GCC 12 warns about the undefined vector its 512-bit conversion intrinsics start from (a false alarm).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// 16 weights of a row from element k, as f32 (AVX-512).
OPTIQ_AVX512 inline __m512 load16(LoadF32, const uint8_t* row, int64_t k) {
  return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
}
OPTIQ_AVX512 inline __m512 load16(LoadF16, const uint8_t* row, int64_t k) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
}
OPTIQ_AVX512 inline __m512 load16(LoadBF16, const uint8_t* row, int64_t k) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// kn_block_columns for CH = 2 Z eight-column vectors as Z sixteen-column ones: the same U, the same chains, so
// the same numbers bit for bit, with half the conversions and FMAs.
template <class L, int Z>
OPTIQ_AVX512 void kn_block_columns_512(const uint8_t* base, size_t row_bytes, int64_t c0, int64_t i0, int64_t i1,
                                       const float* x, float* part) {
  constexpr int U = 2 * Z <= 2 ? 4 : 2;
  __m512 acc[U][Z];
  for (int u = 0; u < U; ++u)
    for (int z = 0; z < Z; ++z) acc[u][z] = _mm512_setzero_ps();
  int64_t i = i0;
  for (; i + U <= i1; i += U) {
    _mm_prefetch(reinterpret_cast<const char*>(base + size_t(i) * row_bytes) + 1024, _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      const uint8_t* row = base + size_t(i + u) * row_bytes;
      const __m512 xv = _mm512_set1_ps(x[i + u]);
      for (int z = 0; z < Z; ++z) acc[u][z] = _mm512_fmadd_ps(xv, load16(L{}, row, c0 + 16 * z), acc[u][z]);
    }
  }
  for (; i < i1; ++i) {
    const uint8_t* row = base + size_t(i) * row_bytes;
    const __m512 xv = _mm512_set1_ps(x[i]);
    for (int z = 0; z < Z; ++z) acc[0][z] = _mm512_fmadd_ps(xv, load16(L{}, row, c0 + 16 * z), acc[0][z]);
  }
  for (int z = 0; z < Z; ++z) {
    __m512 v = acc[0][z];
    for (int u = 1; u < U; ++u) v = _mm512_add_ps(v, acc[u][z]);
    _mm512_storeu_ps(part + c0 + 16 * z, v);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// part[c] = Σ_{i in [i0, i1)} x[i] · a[i, c] for every column c of a (the rank): one x row, one block of a's
// rows, read as one sequential stream. The same order of sums whatever else runs, so rows alone and in
// batches, and any split over threads, give the same numbers.
template <class L>
void kn_block(const WeightView& a, int64_t i0, int64_t i1, const float* x, float* part) {
  const int64_t r = a.cols;
  const bool z = avx512_active();
  int64_t c = 0;
  for (; c + 32 <= r; c += 32) {
    if (z) kn_block_columns_512<L, 2>(a.data, a.row_bytes, c, i0, i1, x, part);
    else kn_block_columns<L, 4>(a.data, a.row_bytes, c, i0, i1, x, part);
  }
  if (c + 16 <= r) {
    if (z) kn_block_columns_512<L, 1>(a.data, a.row_bytes, c, i0, i1, x, part);
    else kn_block_columns<L, 2>(a.data, a.row_bytes, c, i0, i1, x, part);
    c += 16;
  }
  if (c + 8 <= r) kn_block_columns<L, 1>(a.data, a.row_bytes, c, i0, i1, x, part), c += 8;
  for (; c < r; ++c) {
    float acc = 0.0f;
    for (int64_t i = i0; i < i1; ++i) acc = std::fma(x[i], L::load1(a.data + size_t(i) * a.row_bytes, c), acc);
    part[c] = acc;
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
  int64_t part_size = 0;
  for (int i = 0; i < lr_count; ++i) {
    const LowRank& l = lr[i];
    const int64_t rows = l.rows ? l.n_rows : n;
    if (rows <= 0 || l.a.cols == 0) continue;
    int64_t y_row0 = 0;
    for (int j = 0; ws && j < l.out; ++j) y_row0 += ws[j].rows;
    const int64_t blocks = std::max<int64_t>(1, (l.a.rows + kLowRankBlock - 1) / kLowRankBlock);
    terms_.push_back({&l, ys[l.out], rows, blocks, blocks_, part_size, y_row0});
    blocks_ += blocks;
    part_size += blocks * rows * l.a.cols;
    if (std::max(threads_for_float(l.a, rows), threads_for_float(l.b, rows)) > 1) threads_ = compute_threads();
  }
  thread_local std::vector<float> part;  // the block sums of every x·a (the constructing thread's; the region shares it)
  part.resize(size_t(part_size));
  part_ = part.data();
}

void LowRankRun::phase_a(int ti, int nt) const {
  const auto [g0, g1] = thread_share(blocks_, 1, ti, nt);
  for (const Term& tm : terms_) {
    const WeightView& a = tm.lr->a;
    const int64_t b0 = std::max(g0, tm.block0) - tm.block0, b1 = std::min(g1, tm.block0 + tm.blocks) - tm.block0;
    const int64_t in = a.rows, r = a.cols;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kLowRankBlock, i1 = std::min(in, i0 + kLowRankBlock);
      with_loader(*tm.lr, [&](auto l) {
        for (int64_t j = 0; j < tm.rows; ++j) {
          const float* xj = x_ + (tm.lr->rows ? tm.lr->rows[j] : j) * in;
          kn_block<decltype(l)>(a, i0, i1, xj, part_ + tm.part0 + (b * tm.rows + j) * r);
        }
      });
    }
  }
  a_done_.fetch_add(1, std::memory_order_release);
}

void LowRankRun::wait_a(int nt) const {
  while (a_done_.load(std::memory_order_acquire) < nt) _mm_pause();
}

void LowRankRun::add_columns(const Term& tm, int64_t c0, int64_t c1) const {
  if (c0 >= c1) return;
  // x·a: the term's block sums added in block order (the first block's sums themselves when there is one).
  const int64_t size = tm.rows * tm.lr->a.cols;
  const float* t = part_ + tm.part0;
  thread_local std::vector<float> sum;
  if (tm.blocks > 1) {
    sum.assign(t, t + size);
    for (int64_t b = 1; b < tm.blocks; ++b)
      for (int64_t e = 0; e < size; ++e) sum[size_t(e)] += t[b * size + e];
    t = sum.data();
  }
  with_loader(*tm.lr, [&](auto l) { kn_columns<decltype(l)>(tm.lr->b, t, tm.rows, tm.y, c0, c1, tm.lr->alpha, tm.lr->rows); });
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
