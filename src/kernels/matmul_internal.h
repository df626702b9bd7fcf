#pragma once
// Shared between matmul.cpp (reference, dispatch) and the *_avx2.cpp files. Not a public API.
#include "util/omp.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/matmul.h"
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
bool qmatmul_avx2_supported(const WeightView& w);                             // qmatmul_avx2.cpp
void qmatmul_avx2(const WeightView& w, const float* x, int64_t n, float* y);   // int8 activations

// The low-rank terms of one matmul_shared_x call (AVX2, matmul_avx2.cpp), in two phases so that they can share
// the parallel region of the weights they add to. Thread ti of nt first computes its share of the blocks of
// every x·a (phase_a). Then either phase_b, its share of every b's columns, or, inside the weights' region,
// phase_b_rows: the columns that are its own rows [g0, g1) of the weights' outputs (stacked in order), so that
// it adds only to outputs it has already written. Both first wait until all nt threads are through phase_a;
// that is not a barrier: no thread waits for another's rows of the weights. run() is phase_a and phase_b in a
// region of their own. The block sums' scratch is the constructing thread's: one run at a time per thread.
class LowRankRun {
 public:
  // ws: the count weights the terms add to (their outputs' rows), or null.
  LowRankRun(const LowRank* lr, int lr_count, const WeightView* ws, float* const* ys, const float* x, int64_t n);
  bool empty() const { return terms_.empty(); }
  void phase_a(int ti, int nt) const;
  void phase_b(int ti, int nt) const;
  void phase_b_rows(int nt, int64_t g0, int64_t g1) const;
  void run() const;

 private:
  struct Term {
    const LowRank* lr;
    float* y;
    int64_t rows;    // rows of x it applies to
    int64_t blocks;  // blocks of kLowRankBlock rows of a
    int64_t block0;  // its first block among all terms' blocks
    int64_t part0;   // its block sums in part_: [blocks][rows][rank]
    int64_t y_row0;  // its output's first row among all the weights' rows
  };
  void wait_a(int nt) const;
  void add_columns(const Term& tm, int64_t c0, int64_t c1) const;
  std::vector<Term> terms_;
  mutable std::atomic<int> a_done_{0};  // threads through phase_a
  const float* x_;
  float* part_ = nullptr;
  int64_t blocks_ = 0;
  int threads_ = 1;
};

// One row, several weights over it (matmul_shared_x); false when they do not all take the 4-bit decode path.
// The low-rank terms (may be null) run in the same parallel region, after the weights' rows.
bool qmatmul_avx2_decode_shared(const WeightView* ws, float* const* ys, int count, const float* x, const LowRankRun* lr);

// One 32-element block of x as int8 in its own order (qmatmul_avx2.cpp): q = rint(x / d), d = max|x| / 127,
// s = Σx exact in f32.
void quantize_block32(const float* src, int8_t* q, float* d, float* s);

// The kernel of packed 4-bit weights (qmatmul_packed.cpp; AVX-512 VNNI, or AVX2): y_i = W_i x (n rows of x) for the count
// weights, all packed (packed_active) with the same format, columns and group size, plus the low-rank terms lr
// (may be null) in the same parallel region; false, having done nothing, when they do not all take it.
bool packed_active(const WeightView& w);
// prep (may be null): see RowPrep in matmul.h; run in the region's first phase, each thread its rows of x.
bool qmatmul_packed(const WeightView* ws, float* const* ys, int count, const float* x, int64_t n, const LowRankRun* lr,
                    const RowPrep* prep = nullptr);

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

// Rows are split into contiguous ranges, one per thread, each a multiple of `align` rows. Low-rank terms
// (lr, may be null) that add to those rows run in the same region: each thread's share of x·aᵀ first, then
// the terms' columns that are its own rows (in whole 32-column steps of the low-rank kernel). pre(ti, nt), when
// given, is every thread's share of what all rows need first (quantizing x): the threads meet after it.
struct NoPre {
  void operator()(int, int) const {}
};
template <class F, class Pre = NoPre>
void decode_rows(int64_t rows, int64_t align, int threads, F&& f, const LowRankRun* lr = nullptr, Pre&& pre = {}) {
  constexpr bool has_pre = !std::is_same_v<std::decay_t<Pre>, NoPre>;
  if (threads <= 1 || rows < 2 * align) {
    pre(0, 1);
    f(int64_t(0), rows);
    if (lr) lr->run();
    return;
  }
  if (lr) align = std::lcm(align, int64_t(32));
#pragma omp parallel num_threads(threads)
  {
    const int ti = omp_get_thread_num(), nt = omp_get_num_threads();
    if constexpr (has_pre) {
      pre(ti, nt);
#pragma omp barrier
    }
    if (lr) lr->phase_a(ti, nt);
    const auto [r0, r1] = thread_share(rows, align, ti, nt);
    if (r0 < r1) f(r0, r1);
    if (lr) lr->phase_b_rows(nt, r0, r1);
  }
}

}  // namespace optiq::kernels::detail
