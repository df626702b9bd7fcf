// AVX2 attention block over fp16 or MLX affine-quantized K/V (see attention.h). Dequantization is fused:
// 8 codes at a time are unpacked straight into a register (broadcast the word, per-lane variable shift,
// mask, convert) and turned into values with one FMA (code * scale + bias), then used for every query
// head of the tile before the next 8 are read.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/simd_avx2.h"
#include "util/cpu.h"
#include "util/half.h"

namespace optiq::kernels::attn {

namespace {

using detail::exp_neg;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

// The 8 codes (or fp16 values, BITS == 16) of elements [i, i+8) of a packed head row, as floats.
template <int BITS>
inline __m256 load8(const uint8_t* row, int i) {
  if constexpr (BITS == 16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + size_t(i) * 2)));
  } else if constexpr (BITS == 8) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + i))));
  } else {
    // Value k of the 8 sits at stream bits [k*BITS, (k+1)*BITS) of the BITS bytes that hold them. Lanes
    // whose value ends past bit 32 read from the word starting at bit 24 instead.
    uint64_t x = 0;
    std::memcpy(&x, row + size_t(i) * BITS / 8, BITS);
    constexpr int hi_mask = ((1 * BITS > 32) << 0) | ((2 * BITS > 32) << 1) | ((3 * BITS > 32) << 2) | ((4 * BITS > 32) << 3) |
                            ((5 * BITS > 32) << 4) | ((6 * BITS > 32) << 5) | ((7 * BITS > 32) << 6) | ((8 * BITS > 32) << 7);
    auto sh = [](int k) { return (k + 1) * BITS > 32 ? k * BITS - 24 : k * BITS; };
    const __m256i shifts = _mm256_setr_epi32(sh(0), sh(1), sh(2), sh(3), sh(4), sh(5), sh(6), sh(7));
    __m256i v = _mm256_set1_epi32(int(uint32_t(x)));
    if constexpr (hi_mask != 0) v = _mm256_blend_epi32(v, _mm256_set1_epi32(int(uint32_t(x >> 24))), hi_mask);
    v = _mm256_and_si256(_mm256_srlv_epi32(v, shifts), _mm256_set1_epi32((1 << BITS) - 1));
    return _mm256_cvtepi32_ps(v);
  }
}

inline float f16(uint16_t h) { return _cvtsh_ss(h); }

constexpr int kPrefetch = 16;  // tokens ahead

// Software pipelining across blocks: while the V rows of one block are summed, the K rows of the same
// head's next block (another page) are asked for into L2, one row per token (ask(i) for row i); while
// the K rows are dotted, the V rows of the same block are. Each pass then streams one array from DRAM
// while it computes on one already near. Blocks start at multiples of kChunk, so the next one starts at
// t0 + kChunk whatever the queries' limits cut from this one.
class NextKRows {
 public:
  NextKRows(const KvLayerView& kv, int g, int t0) : hb_(kv.head_bytes()) {
    const int t = t0 + kChunk;
    if (t < kv.n_tokens) n_ = std::min(kv.n_tokens - t, kChunk), row0_ = kv.k_row(g, t);
  }
  void ask(int i) const {
    if (i >= n_) return;
    const uint8_t* row = row0_ + size_t(i) * hb_;
    for (size_t off = 0; off < hb_; off += 64) _mm_prefetch(reinterpret_cast<const char*>(row + off), _MM_HINT_T1);
  }

 private:
  size_t hb_;
  int n_ = 0;
  const uint8_t* row0_ = nullptr;
};

// Per-block f32 copies of one head's group parameters: out[gi * kChunk + i] for token t0 + i.
// Eight tokens at a time for one or two groups per head (head_dim up to 2 groups: 64 / g64, 128 / g64):
// one f16 -> f32 conversion per 8 values and a lane permutation that separates the groups.
void load_params(const uint16_t* p, int ng, int n, float* out) {
  int i = 0;
  if (ng == 1) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))));
  } else if (ng == 2) {
    const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (; i + 8 <= n; i += 8) {
      // tokens i..i+3 and i+4..i+7, each [g0 g1 g0 g1 ...] -> [g0 x4 | g1 x4]
      const __m256 a = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))), even_odd);
      const __m256 b = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i + 8))), even_odd);
      _mm256_storeu_ps(out + i, _mm256_permute2f128_ps(a, b, 0x20));
      _mm256_storeu_ps(out + kChunk + i, _mm256_permute2f128_ps(a, b, 0x31));
    }
  }
  for (; i < n; ++i)
    for (int gi = 0; gi < ng; ++gi) out[size_t(gi) * kChunk + size_t(i)] = f16(p[size_t(i) * ng + size_t(gi)]);
}

// Dots of NQ queries with TT consecutive K rows over elements [e0, e1): TT*NQ independent FMA chains so
// the loop runs at FMA throughput, not latency; each 8-code load is unpacked once for all NQ queries.
template <int BITS, int NQ, int TT>
inline void dot_rows(const uint8_t* row, size_t hb, const float* q, int d, int e0, int e1, float* out, size_t out_stride) {
  __m256 acc[TT][NQ];
  #pragma GCC unroll 8
  for (int tt = 0; tt < TT; ++tt)
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) acc[tt][j] = _mm256_setzero_ps();
  for (int e = e0; e < e1; e += 8) {
    __m256 qv[NQ];
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) qv[j] = _mm256_loadu_ps(q + size_t(j) * d + e);
    #pragma GCC unroll 8
    for (int tt = 0; tt < TT; ++tt) {
      const __m256 x = load8<BITS>(row + size_t(tt) * hb, e);
      #pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) acc[tt][j] = _mm256_fmadd_ps(qv[j], x, acc[tt][j]);
    }
  }
  #pragma GCC unroll 8
  for (int tt = 0; tt < TT; ++tt)
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) out[size_t(j) * out_stride + size_t(tt)] = hsum(acc[tt][j]);
}

// Scores of NQ queries against tokens [t0, t1): s[j*kChunk + t - t0] = q_j · k_t. For quantized K the
// dot runs over raw codes per group and the group's affine map is applied once per group:
//   q·k = sum_g scale_g * (q_g · codes_g) + bias_g * sum(q_g).
template <int NQ, int CPG>
void scores_q4(const KvLayerView& kv, int g, const float* q, int t0, int t1, float* s, float* work);

template <int BITS, int NQ>
void scores(const KvLayerView& kv, int g, const float* q, int t0, int t1, float* s, float* work) {
  if constexpr (BITS == 4)
    if (int8_q(kv)) return kv.group_size == 128 ? scores_q4<NQ, 2>(kv, g, q, t0, t1, s, work) : scores_q4<NQ, 1>(kv, g, q, t0, t1, s, work);
  const int d = kv.head_dim, n = t1 - t0;
  const int gs = BITS == 16 ? d : kv.group_size, ng = d / gs;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.k_row(g, t0);
  const uint8_t* vrow0 = kv.v_row(g, t0);
  // fp16: dots go straight to s; quantized: per group to `dots`, combined below.
  float* dots = BITS == 16 ? s : work + size_t(2 * ng) * kChunk;  // [NQ][ng][kChunk]
  const size_t dstride = BITS == 16 ? kChunk : size_t(ng) * kChunk;
  constexpr int TT = NQ <= 2 ? 4 : 2;
  for (int gi = 0; gi < ng; ++gi) {
    int i = 0;
    for (; i + TT <= n; i += TT) {
      // Keep DRAM busy: ask for the V rows of this block (on the first pass) while these are being multiplied,
      // and for quantized K the K rows kPrefetch tokens ahead. fp16 K rows are left to the hardware
      // prefetchers: asking for them too made the kernel slower on an AVX2-only EPYC (attention_bench --depth 160
      // --seqs 8 --bits 16 --distinct --layers 28: 7.2-8.1 against 8.3-9.5 ms a step), where 8-bit K needs it
      // (7.1-7.4 against 11.3 ms without).
      if (gi == 0)
        for (size_t off = 0; off < size_t(TT) * hb; off += 64) {
          if constexpr (BITS != 16)
            _mm_prefetch(reinterpret_cast<const char*>(row0 + size_t(i + kPrefetch) * hb + off), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(vrow0 + size_t(i) * hb + off), _MM_HINT_T1);
        }
      dot_rows<BITS, NQ, TT>(row0 + size_t(i) * hb, hb, q, d, gi * gs, (gi + 1) * gs, dots + size_t(gi) * kChunk + i, dstride);
    }
    for (; i < n; ++i)
      dot_rows<BITS, NQ, 1>(row0 + size_t(i) * hb, hb, q, d, gi * gs, (gi + 1) * gs, dots + size_t(gi) * kChunk + i, dstride);
  }
  if constexpr (BITS != 16) {
    float* sc = work;
    float* bi = work + size_t(ng) * kChunk;
    load_params(kv.k_scale(g, t0), ng, n, sc);
    load_params(kv.k_bias(g, t0), ng, n, bi);
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) {
      float* sj = s + size_t(j) * kChunk;
      for (int gi = 0; gi < ng; ++gi) {
        float qsum = 0;
        for (int e = gi * gs; e < (gi + 1) * gs; ++e) qsum += q[size_t(j) * d + e];
        const float* dj = dots + size_t(j) * dstride + size_t(gi) * kChunk;
        const float* scg = sc + size_t(gi) * kChunk;
        const float* big = bi + size_t(gi) * kChunk;
        const __m256 vq = _mm256_set1_ps(qsum);
        int i = 0;
        for (; i + 8 <= n; i += 8) {
          __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(scg + i), _mm256_loadu_ps(dj + i), _mm256_mul_ps(_mm256_loadu_ps(big + i), vq));
          if (gi > 0) v = _mm256_add_ps(v, _mm256_loadu_ps(sj + i));
          _mm256_storeu_ps(sj + i, v);
        }
        for (; i < n; ++i) sj[i] = (gi > 0 ? sj[i] : 0.0f) + (scg[i] * dj[i] + big[i] * qsum);
      }
    }
  }
}

// What the integer dots of scores_q4 read and write (see there): K rows (and V rows, to prefetch), the
// packed queries qp[NQ][512] as [32 even | 32 odd] int8 per 32-byte chunk, and dots [NQ][ng][kChunk].
template <int NQ>
struct Q4Dots {
  const uint8_t* row0;
  const uint8_t* vrow0;
  size_t hb;
  int nch, nslot;
  bool halves;
  int ng;
  const int8_t (*qp)[512];
  float* dots;
};

// The int32 sums of 8 tokens, part[j][v][tt] (8 lanes each), summed across lanes together (a transposed
// reduction), so the dots of 8 tokens come out as one vector instead of 8 horizontal sums.
template <int NQ>
inline void store_dots8(const Q4Dots<NQ>& qd, __m256i (*part)[8][8], int i0) {
  for (int j = 0; j < NQ; ++j)
    for (int v = 0; v < qd.nslot; ++v) {
      const __m256i* pv = part[j][v];
      const __m256i h01 = _mm256_hadd_epi32(pv[0], pv[1]), h23 = _mm256_hadd_epi32(pv[2], pv[3]);
      const __m256i h45 = _mm256_hadd_epi32(pv[4], pv[5]), h67 = _mm256_hadd_epi32(pv[6], pv[7]);
      const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
      // lanes 0-3 of a (b) are the low 128 bits of tokens 0-3 (4-7), lanes 4-7 the high 128 bits
      const __m256i lo128 = _mm256_permute2x128_si256(a, b, 0x20), hi128 = _mm256_permute2x128_si256(a, b, 0x31);
      float* dst = qd.dots + size_t(j) * qd.ng * kChunk + size_t(i0);
      if (!qd.halves) {
        _mm256_storeu_ps(dst + size_t(v) * kChunk, _mm256_cvtepi32_ps(_mm256_add_epi32(lo128, hi128)));
      } else {
        _mm256_storeu_ps(dst + size_t(2 * v) * kChunk, _mm256_cvtepi32_ps(lo128));
        if (2 * v + 1 < qd.ng) _mm256_storeu_ps(dst + size_t(2 * v + 1) * kChunk, _mm256_cvtepi32_ps(hi128));
      }
    }
}

inline void prefetch_kv_row(const uint8_t* krow_ahead, const uint8_t* vrow, size_t hb) {
  for (size_t off = 0; off < hb; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(krow_ahead + off), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(vrow + off), _MM_HINT_T1);
  }
}

// The integer dots of n tokens, 8 at a time, in 256-bit vectors: one 32-byte chunk (64 codes) per step.
template <int NQ, int CPG>
void q4_dots(const Q4Dots<NQ>& qd, int n) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const int full = int(qd.hb / 32);  // whole 32-byte chunks
  alignas(32) __m256i part[NQ][8][8];
  for (int i0 = 0; i0 < n; i0 += 8) {
    const int nt = std::min(8, n - i0);
    for (int tt = 0; tt < 8; ++tt) {
      if (tt >= nt) {
        for (int j = 0; j < NQ; ++j)
          for (int v = 0; v < qd.nslot; ++v) part[j][v][tt] = _mm256_setzero_si256();
        continue;
      }
      const uint8_t* row = qd.row0 + size_t(i0 + tt) * qd.hb;
      prefetch_kv_row(row + size_t(kPrefetch) * qd.hb, qd.vrow0 + size_t(i0 + tt) * qd.hb, qd.hb);
      for (int v = 0; v < qd.nslot; ++v) {
        __m256i p16[NQ];
        #pragma GCC unroll 2
        for (int k = 0; k < CPG; ++k) {
          const int c = v * CPG + k;
          const __m256i x = c < full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32))
                                     : _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 32)));
          const __m256i lo = _mm256_and_si256(x, low4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
          #pragma GCC unroll 8
          for (int j = 0; j < NQ; ++j) {
            const __m256i* qc = reinterpret_cast<const __m256i*>(qd.qp[j] + c * 64);
            const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_load_si256(qc)),
                                                _mm256_maddubs_epi16(hi, _mm256_load_si256(qc + 1)));
            p16[j] = k == 0 ? pr : _mm256_add_epi16(p16[j], pr);
          }
        }
        #pragma GCC unroll 8
        for (int j = 0; j < NQ; ++j) part[j][v][tt] = _mm256_madd_epi16(p16[j], ones);
      }
    }
    store_dots8<NQ>(qd, part, i0);
  }
}

// q4_dots in 512-bit vectors (CPUs with AVX-512, head_dim a multiple of 128): two chunks per step, the
// queries' even and odd halves of both side by side, the same integer sums (so the same dots).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// store_dots8 for 16-lane sums: part[j][pp][tt] holds token tt's int32 sums of pair pp, one 128-bit lane
// per 16 elements (groups of 64: lanes 0-1 group 2pp, lanes 2-3 group 2pp+1; groups of 32: a group per lane).
// The same transposed reduction in 512-bit steps (hadd as two shuffles and an add, per 128-bit lane), then
// each group's 8 tokens gathered from the 128-bit lanes; integer sums, so the same dots as store_dots8.
#define OPTIQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
OPTIQ_AVX512 inline __m512i hadd_512(__m512i x, __m512i y) {
  const __m512 a = _mm512_castsi512_ps(x), b = _mm512_castsi512_ps(y);
  return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(a, b, 0x88)), _mm512_castps_si512(_mm512_shuffle_ps(a, b, 0xDD)));
}

// v = [x0 x2 y0 y2] (128-bit lanes) -> dst + g0 * kChunk gets [x0 y0], dst + g1 * kChunk [x2 y2] (if g1 < ng), as f32.
OPTIQ_AVX512 inline void store_group_pair(__m512i v, float* dst, int g0, int g1, int ng) {
  const __m512 f = _mm512_cvtepi32_ps(_mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)));
  _mm256_storeu_ps(dst + size_t(g0) * kChunk, _mm512_castps512_ps256(f));
  if (g1 < ng) _mm256_storeu_ps(dst + size_t(g1) * kChunk, _mm512_extractf32x8_ps(f, 1));
}

template <int NQ>
OPTIQ_AVX512 inline void store_dots8_512(const Q4Dots<NQ>& qd, __m512i (*part)[8][8], int npairs, int i0) {
  for (int j = 0; j < NQ; ++j)
    for (int pp = 0; pp < npairs; ++pp) {
      const __m512i* pv = part[j][pp];
      // per 128-bit lane k: a = [tokens 0-3 sums of lane k], b = tokens 4-7
      const __m512i a = hadd_512(hadd_512(pv[0], pv[1]), hadd_512(pv[2], pv[3]));
      const __m512i b = hadd_512(hadd_512(pv[4], pv[5]), hadd_512(pv[6], pv[7]));
      const __m512i p = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // [a0 a2 b0 b2]
      const __m512i q = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));  // [a1 a3 b1 b3]
      float* dst = qd.dots + size_t(j) * qd.ng * kChunk + size_t(i0);
      if (!qd.halves) {
        store_group_pair(_mm512_add_epi32(p, q), dst, 2 * pp, 2 * pp + 1, qd.ng);
      } else {
        store_group_pair(p, dst, 4 * pp, 4 * pp + 2, qd.ng);
        store_group_pair(q, dst, 4 * pp + 1, 4 * pp + 3, qd.ng);
      }
    }
}

template <int NQ, int CPG>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void q4_dots_512(const Q4Dots<NQ>& qd, int n) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi16(1);
  const int npairs = qd.nch / 2;  // pairs of 32-byte chunks (64-byte steps)
  alignas(64) __m512i qe[NQ][4], qo[NQ][4];  // head_dim <= 512: up to 4 pairs
  for (int j = 0; j < NQ; ++j)
    for (int pp = 0; pp < npairs; ++pp) {
      const int8_t* c0 = qd.qp[j] + pp * 128;
      const __m256i* a = reinterpret_cast<const __m256i*>(c0);
      const __m256i* b = reinterpret_cast<const __m256i*>(c0 + 64);
      qe[j][pp] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256(a)), _mm256_load_si256(b), 1);
      qo[j][pp] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256(a + 1)), _mm256_load_si256(b + 1), 1);
    }
  // CPG 2: 8 lanes per pair and token (one group); CPG 1: 16 (the pair's two chunks, each a group or two).
  alignas(64) __m256i part8[CPG == 2 ? NQ : 1][8][8];
  alignas(64) __m512i part16[CPG == 1 ? NQ : 1][8][8];
  for (int i0 = 0; i0 < n; i0 += 8) {
    const int nt = std::min(8, n - i0);
    for (int tt = 0; tt < 8; ++tt) {
      if (tt >= nt) {
        for (int j = 0; j < NQ; ++j)
          for (int pp = 0; pp < npairs; ++pp) {
            if constexpr (CPG == 2) part8[j][pp][tt] = _mm256_setzero_si256();
            else part16[j][pp][tt] = _mm512_setzero_si512();
          }
        continue;
      }
      const uint8_t* row = qd.row0 + size_t(i0 + tt) * qd.hb;
      prefetch_kv_row(row + size_t(kPrefetch) * qd.hb, qd.vrow0 + size_t(i0 + tt) * qd.hb, qd.hb);
      for (int pp = 0; pp < npairs; ++pp) {
        const __m512i x = _mm512_loadu_si512(row + pp * 64);
        const __m512i lo = _mm512_and_si512(x, low4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), low4);
        #pragma GCC unroll 8
        for (int j = 0; j < NQ; ++j) {
          const __m512i s16 = _mm512_add_epi16(_mm512_maddubs_epi16(lo, qe[j][pp]), _mm512_maddubs_epi16(hi, qo[j][pp]));
          if constexpr (CPG == 2) {  // one group per pair: 16-bit sums of both chunks (below 2^15), then widen
            const __m256i h = _mm256_add_epi16(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
            part8[j][pp][tt] = _mm256_madd_epi16(h, _mm512_castsi512_si256(ones));
          } else {
            part16[j][pp][tt] = _mm512_madd_epi16(s16, ones);
          }
        }
      }
    }
    if constexpr (CPG == 2) store_dots8<NQ>(qd, part8, i0);
    else store_dots8_512<NQ>(qd, part16, npairs, i0);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Scores of NQ queries against 4-bit K in integers (int8_q(kv)). A row is read in chunks of 32 bytes, 64
// codes (the last chunk holds 16 bytes when head_dim % 64 == 32): low nibbles are elements 2b, high
// nibbles 2b+1, so q, rounded to int8 per group (attention.h), is stored per chunk as [32 even elements |
// 32 odd elements] and two maddubs multiply and pair a whole chunk. Each 16-bit lane then sums 4 elements
// of one group (at most 2 x 2 x 15 x 127 per chunk); lanes add up over the chunks of a group (at most
// 2, groups of 128, so below 2^15) before one madd widens them, and with groups of 32 each chunk holds two
// groups, one per 128-bit half.
//   q·k = sum_g sq_g (s_g (qi_g · c_g) + b_g sum(qi_g)),  sq_g the group's q scale.
// CPG: chunks per group (1 for groups of 32 or 64, 2 for 128).
template <int NQ, int CPG>
void scores_q4(const KvLayerView& kv, int g, const float* q, int t0, int t1, float* s, float* work) {
  const int d = kv.head_dim, n = t1 - t0, gs = kv.group_size, ng = d / gs;
  const int nch = (d + 63) / 64;
  const bool halves = gs == 32;                       // two groups per chunk
  const int nslot = halves ? nch : ng;                // int32 vectors per token and query
  const size_t hb = kv.head_bytes();
  alignas(32) int8_t qp[NQ][512];
  float qs[NQ][16], qsum[NQ][16];
  // The rounding of round_q_int8 (attention.cpp) in vector form: the same max, the same single-precision
  // product and round-to-nearest-even, so the same int8 values.
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  #pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) {
    const float* qj = q + size_t(j) * d;
    alignas(32) int32_t qi[512];
    for (int gi = 0; gi < ng; ++gi) {
      __m256 mx = _mm256_setzero_ps();
      for (int e = gi * gs; e < (gi + 1) * gs; e += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(qj + e), absmask));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      const float m = _mm_cvtss_f32(m4);
      qs[j][gi] = m / 127.0f;
      const __m256 inv = _mm256_set1_ps(m > 0 ? 127.0f / m : 0.0f);
      __m256i sum = _mm256_setzero_si256();
      for (int e = gi * gs; e < (gi + 1) * gs; e += 8) {
        const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(qj + e), inv));
        _mm256_store_si256(reinterpret_cast<__m256i*>(qi + e), v);
        sum = _mm256_add_epi32(sum, v);
      }
      alignas(32) int32_t t[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(t), sum);
      qsum[j][gi] = float(t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7]) * qs[j][gi];
    }
    for (int c = 0; c < nch; ++c)
      for (int b = 0; b < 32; ++b) {
        const int e = c * 64 + 2 * b;
        qp[j][c * 64 + b] = e < d ? int8_t(qi[e]) : 0;
        qp[j][c * 64 + 32 + b] = e < d ? int8_t(qi[e + 1]) : 0;
      }
  }
  float* sc = work;
  float* bi = work + size_t(ng) * kChunk;
  float* dots = work + size_t(2 * ng) * kChunk;  // [NQ][ng][kChunk]: qi_g · c_g per token
  load_params(kv.k_scale(g, t0), ng, n, sc);
  load_params(kv.k_bias(g, t0), ng, n, bi);
  const uint8_t* row0 = kv.k_row(g, t0);
  const uint8_t* vrow0 = kv.v_row(g, t0);
  const Q4Dots<NQ> qd{row0, vrow0, hb, nch, nslot, halves, ng, qp, dots};
  if (d % 128 == 0 && avx512_active()) q4_dots_512<NQ, CPG>(qd, n);
  else q4_dots<NQ, CPG>(qd, n);
  // s_j = sum_g scale_g * sq_g * dot_g + bias_g * sum(q_hat_g), 8 tokens per vector (the tail lanes of
  // the last vector are computed and not used).
  #pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) {
    float* sj = s + size_t(j) * kChunk;
    for (int i = 0; i < n; i += 8) {
      __m256 v = _mm256_setzero_ps();
      for (int gi = 0; gi < ng; ++gi) {
        const size_t o = size_t(gi) * kChunk + size_t(i);
        const __m256 dot = _mm256_loadu_ps(dots + (size_t(j) * ng + size_t(gi)) * kChunk + size_t(i));
        v = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(sc + o), _mm256_set1_ps(qs[j][gi])), dot, v);
        v = _mm256_fmadd_ps(_mm256_loadu_ps(bi + o), _mm256_set1_ps(qsum[j][gi]), v);
      }
      _mm256_storeu_ps(sj + i, v);
    }
  }
}

// Quantized V, once per block: with w = p*scale per token and group,
//   sum_t p_t (scale_t c_t + bias_t) = sum_t w_t c_t + [sum_t p_t bias_t],
// this writes w to work + 2*ng*kChunk as [NQ][ng][kChunk] and adds the bracket to each query's
// accumulators, once per group.
template <int NQ>
void v_weights(const KvLayerView& kv, int g, const float* p, int t0, int t1, Partial* parts, float* work) {
  const int n = t1 - t0, gs = kv.group_size, ng = kv.head_dim / gs;
  float* sc = work;
  float* bi = work + size_t(ng) * kChunk;
  float* ww = work + size_t(2 * ng) * kChunk;
  const size_t wstride = size_t(ng) * kChunk;
  load_params(kv.v_scale(g, t0), ng, n, sc);
  load_params(kv.v_bias(g, t0), ng, n, bi);
  #pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j)
    for (int gi = 0; gi < ng; ++gi) {
      const float* pj = p + size_t(j) * kChunk;
      float* wj = ww + size_t(j) * wstride + size_t(gi) * kChunk;
      const float* scg = sc + size_t(gi) * kChunk;
      const float* big = bi + size_t(gi) * kChunk;
      __m256 bsum = _mm256_setzero_ps();
      int i = 0;
      for (; i + 8 <= n; i += 8) {
        const __m256 pv = _mm256_loadu_ps(pj + i);
        _mm256_storeu_ps(wj + i, _mm256_mul_ps(pv, _mm256_loadu_ps(scg + i)));
        bsum = _mm256_fmadd_ps(pv, _mm256_loadu_ps(big + i), bsum);
      }
      float b = hsum(bsum);
      for (; i < n; ++i) {
        wj[i] = pj[i] * scg[i];
        b += pj[i] * big[i];
      }
      const __m256 vb = _mm256_set1_ps(b);
      float* acc = parts[j].acc + gi * gs;
      for (int e = 0; e < gs; e += 8) _mm256_storeu_ps(acc + e, _mm256_add_ps(_mm256_loadu_ps(acc + e), vb));
    }
}

// acc_j += sum_t p_j[t] * v_t for NQ queries (quantized V through v_weights). Columns go in slabs of SW
// (inside one group) so the NQ*SW/8 accumulators stay in registers while the tokens stream past.
template <int BITS, int NQ, int SW>
void weighted_sum(const KvLayerView& kv, int g, const float* p, int t0, int t1, Partial* parts, float* work) {
  const int d = kv.head_dim, n = t1 - t0;
  const int gs = BITS == 16 ? d : kv.group_size, ng = d / gs;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.v_row(g, t0);
  const float* w = p;  // weights per query: w[j * wstride + gi * kChunk + i]
  size_t wstride = kChunk;
  if constexpr (BITS != 16) {
    v_weights<NQ>(kv, g, p, t0, t1, parts, work);
    w = work + size_t(2 * ng) * kChunk;
    wstride = size_t(ng) * kChunk;
  }
  const NextKRows next_k(kv, g, t0);
  for (int c = 0; c < d; c += SW) {
    __m256 acc[NQ][SW / 8];
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 8
      for (int k = 0; k < SW / 8; ++k) acc[j][k] = _mm256_loadu_ps(parts[j].acc + c + 8 * k);
    const float* wg = w + size_t(c / gs) * kChunk;
    for (int i = 0; i < n; ++i) {
      if (c == 0) next_k.ask(i);
      const uint8_t* row = row0 + size_t(i) * hb;
      __m256 x[SW / 8];
      #pragma GCC unroll 8
      for (int k = 0; k < SW / 8; ++k) x[k] = load8<BITS>(row, c + 8 * k);
      #pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) {
        const __m256 wv = _mm256_broadcast_ss(wg + size_t(j) * wstride + size_t(i));
        #pragma GCC unroll 8
        for (int k = 0; k < SW / 8; ++k) acc[j][k] = _mm256_fmadd_ps(wv, x[k], acc[j][k]);
      }
    }
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 8
      for (int k = 0; k < SW / 8; ++k) _mm256_storeu_ps(parts[j].acc + c + 8 * k, acc[j][k]);
  }
}

// weighted_sum for 4-bit V (groups of 16 or more): the bytes of a row are widened straight to 32-bit
// lanes (vpmovzxbd), so one load and two masks give 8 even elements (low nibbles) and 8 odd elements
// (high nibbles, kept as 16 x code). The accumulators hold a slab of SW columns split the same way, odd
// ones times 16, and are put back in order and scale after the block; the factor 16 is exact, so every
// sum rounds as in weighted_sum.
template <int NQ, int SW>
void weighted_sum_q4(const KvLayerView& kv, int g, const float* p, int t0, int t1, Partial* parts, float* work) {
  const int d = kv.head_dim, n = t1 - t0, gs = kv.group_size, ng = d / gs;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.v_row(g, t0);
  const size_t wstride = size_t(ng) * kChunk;
  v_weights<NQ>(kv, g, p, t0, t1, parts, work);
  const float* w = work + size_t(2 * ng) * kChunk;  // [NQ][ng][kChunk]
  const __m256i lo4 = _mm256_set1_epi32(0x0F), hi4 = _mm256_set1_epi32(0xF0);
  const __m256 sixteen = _mm256_set1_ps(16.0f), sixteenth = _mm256_set1_ps(1.0f / 16.0f);
  constexpr int H = SW / 16;  // 16-column halves of a slab: one 8-byte load each
  const NextKRows next_k(kv, g, t0);
  for (int c = 0; c < d; c += SW) {
    __m256 ev[NQ][H], od[NQ][H];
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 4
      for (int h = 0; h < H; ++h) {
        const float* a = parts[j].acc + c + 16 * h;
        const __m256 n0 = _mm256_loadu_ps(a), n1 = _mm256_loadu_ps(a + 8);
        ev[j][h] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(n0, n1, 0x88)), 0xD8));
        od[j][h] = _mm256_mul_ps(_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(n0, n1, 0xDD)), 0xD8)), sixteen);
      }
    const float* wg = w + size_t(c / gs) * kChunk;
    for (int i = 0; i < n; ++i) {
      if (c == 0) next_k.ask(i);
      const uint8_t* row = row0 + size_t(i) * hb + c / 2;
      __m256 xe[H], xo[H];
      #pragma GCC unroll 4
      for (int h = 0; h < H; ++h) {
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 8 * h)));
        xe[h] = _mm256_cvtepi32_ps(_mm256_and_si256(b, lo4));
        xo[h] = _mm256_cvtepi32_ps(_mm256_and_si256(b, hi4));
      }
      #pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) {
        const __m256 wv = _mm256_broadcast_ss(wg + size_t(j) * wstride + size_t(i));
        #pragma GCC unroll 4
        for (int h = 0; h < H; ++h) {
          ev[j][h] = _mm256_fmadd_ps(wv, xe[h], ev[j][h]);
          od[j][h] = _mm256_fmadd_ps(wv, xo[h], od[j][h]);
        }
      }
    }
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 4
      for (int h = 0; h < H; ++h) {
        const __m256 o = _mm256_mul_ps(od[j][h], sixteenth);
        const __m256 l = _mm256_unpacklo_ps(ev[j][h], o), u = _mm256_unpackhi_ps(ev[j][h], o);
        float* a = parts[j].acc + c + 16 * h;
        _mm256_storeu_ps(a, _mm256_permute2f128_ps(l, u, 0x20));
        _mm256_storeu_ps(a + 8, _mm256_permute2f128_ps(l, u, 0x31));
      }
  }
}

// weighted_sum_q4 in 512-bit vectors (CPUs with AVX-512): 16 bytes of a row widen to 16 lanes, 16 even and
// 16 odd elements of 32 columns. Slabs of SW columns, whose groups of GC columns each take their own weight
// (GC = SW: the slab inside one group). Every element is the same chain of FMAs as in weighted_sum_q4, so the
// results are the same bit for bit.
// (GCC 12 warns, wrongly, that the intrinsics' _mm512_undefined_* operands may be used uninitialized.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <int NQ, int SW, int GC = SW>
OPTIQ_AVX512 void weighted_sum_q4_512(const KvLayerView& kv, int g, const float* p, int t0, int t1, Partial* parts,
                                      float* work) {
  const int d = kv.head_dim, n = t1 - t0, gs = kv.group_size, ng = d / gs;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.v_row(g, t0);
  const size_t wstride = size_t(ng) * kChunk;
  v_weights<NQ>(kv, g, p, t0, t1, parts, work);
  const float* w = work + size_t(2 * ng) * kChunk;  // [NQ][ng][kChunk]
  const __m512i lo4 = _mm512_set1_epi32(0x0F), hi4 = _mm512_set1_epi32(0xF0);
  const __m512 sixteen = _mm512_set1_ps(16.0f), sixteenth = _mm512_set1_ps(1.0f / 16.0f);
  // 32 consecutive floats (two vectors) to [even | odd] and back.
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i zip0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i zip1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  constexpr int Q = SW / 32;  // 32-column quarters of a slab: one 16-byte load each
  const NextKRows next_k(kv, g, t0);
  for (int c = 0; c < d; c += SW) {
    __m512 ev[NQ][Q], od[NQ][Q];
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 4
      for (int h = 0; h < Q; ++h) {
        const float* a = parts[j].acc + c + 32 * h;
        const __m512 n0 = _mm512_loadu_ps(a), n1 = _mm512_loadu_ps(a + 16);
        ev[j][h] = _mm512_permutex2var_ps(n0, even, n1);
        od[j][h] = _mm512_mul_ps(_mm512_permutex2var_ps(n0, odd, n1), sixteen);
      }
    const float* wg = w + size_t(c / gs) * kChunk;
    for (int i = 0; i < n; ++i) {
      if (c == 0) next_k.ask(i);
      const uint8_t* row = row0 + size_t(i) * hb + c / 2;
      __m512 xe[Q], xo[Q];
      #pragma GCC unroll 4
      for (int h = 0; h < Q; ++h) {
        const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * h)));
        xe[h] = _mm512_cvtepi32_ps(_mm512_and_si512(b, lo4));
        xo[h] = _mm512_cvtepi32_ps(_mm512_and_si512(b, hi4));
      }
      #pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) {
        __m512 wv;
        #pragma GCC unroll 4
        for (int h = 0; h < Q; ++h) {
          if (h % (GC / 32) == 0) wv = _mm512_set1_ps(wg[size_t(j) * wstride + size_t(32 * h / GC) * kChunk + size_t(i)]);
          ev[j][h] = _mm512_fmadd_ps(wv, xe[h], ev[j][h]);
          od[j][h] = _mm512_fmadd_ps(wv, xo[h], od[j][h]);
        }
      }
    }
    #pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 4
      for (int h = 0; h < Q; ++h) {
        const __m512 o = _mm512_mul_ps(od[j][h], sixteenth);
        float* a = parts[j].acc + c + 32 * h;
        _mm512_storeu_ps(a, _mm512_permutex2var_ps(ev[j][h], zip0, o));
        _mm512_storeu_ps(a + 16, _mm512_permutex2var_ps(ev[j][h], zip1, o));
      }
  }
}

// fp16 K/V in 512-bit vectors (CPUs with AVX-512, head_dim a multiple of 16): half the instructions of the
// 256-bit loops for the same bytes.
// The four sums of a, b, c and d.
OPTIQ_AVX512 inline __m128 sum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
  // 128-bit lanes: [a0+a2 a1+a3 b0+b2 b1+b3], [c.. d..], then lane k holds vector k's four partial sums
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  u = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4E));
  u = _mm512_add_ps(u, _mm512_permute_ps(u, 0xB1));  // every element of lane k: vector k's sum
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), u));
}

// scores<16, NQ> in 512-bit vectors: 4 tokens at a time, each K row converted once for the NQ queries, and
// the 4 x NQ dots reduced together. Prefetches as scores does.
template <int NQ>
OPTIQ_AVX512 void scores16_512(const KvLayerView& kv, int g, const float* q, int t0, int t1, float* s) {
  const int d = kv.head_dim, n = t1 - t0;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.k_row(g, t0);
  const uint8_t* vrow0 = kv.v_row(g, t0);
  constexpr int TT = 4;
  int i = 0;
  for (; i + TT <= n; i += TT) {
    for (size_t off = 0; off < size_t(TT) * hb; off += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(row0 + size_t(i + kPrefetch) * hb + off), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(vrow0 + size_t(i) * hb + off), _MM_HINT_T1);
    }
    __m512 acc[TT][NQ];
    #pragma GCC unroll 4
    for (int tt = 0; tt < TT; ++tt)
      #pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) acc[tt][j] = _mm512_setzero_ps();
    const uint8_t* row = row0 + size_t(i) * hb;
    for (int e = 0; e < d; e += 16) {
      __m512 qv[NQ];
      #pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) qv[j] = _mm512_loadu_ps(q + size_t(j) * d + e);
      #pragma GCC unroll 4
      for (int tt = 0; tt < TT; ++tt) {
        const __m512 k = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + size_t(tt) * hb + size_t(e) * 2)));
        #pragma GCC unroll 4
        for (int j = 0; j < NQ; ++j) acc[tt][j] = _mm512_fmadd_ps(qv[j], k, acc[tt][j]);
      }
    }
    #pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) _mm_storeu_ps(s + size_t(j) * kChunk + i, sum4_512(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
  }
  for (; i < n; ++i) {
    const uint8_t* row = row0 + size_t(i) * hb;
    __m512 acc[NQ];
    #pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) acc[j] = _mm512_setzero_ps();
    for (int e = 0; e < d; e += 16) {
      const __m512 k = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + size_t(e) * 2)));
      #pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(q + size_t(j) * d + e), k, acc[j]);
    }
    // the same reduction tree as the 4-token steps, so a token's score does not depend on where a block ends
    const __m512 z = _mm512_setzero_ps();
    #pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) s[size_t(j) * kChunk + size_t(i)] = _mm_cvtss_f32(sum4_512(acc[j], z, z, z));
  }
}

// weighted_sum<16, NQ, ...> in 512-bit vectors, slabs of SW columns: every element is the same chain of FMAs,
// so the same numbers bit for bit.
template <int NQ, int SW>
OPTIQ_AVX512 void weighted_sum16_512(const KvLayerView& kv, int g, const float* p, int t0, int t1, Partial* parts) {
  const int d = kv.head_dim, n = t1 - t0;
  const size_t hb = kv.head_bytes();
  const uint8_t* row0 = kv.v_row(g, t0);
  const NextKRows next_k(kv, g, t0);
  constexpr int V = SW / 16;
  for (int c = 0; c < d; c += SW) {
    __m512 acc[NQ][V];
    #pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 8
      for (int k = 0; k < V; ++k) acc[j][k] = _mm512_loadu_ps(parts[j].acc + c + 16 * k);
    for (int i = 0; i < n; ++i) {
      if (c == 0) next_k.ask(i);
      const uint8_t* row = row0 + size_t(i) * hb + size_t(c) * 2;
      __m512 x[V];
      #pragma GCC unroll 8
      for (int k = 0; k < V; ++k) x[k] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * k)));
      #pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) {
        const __m512 wv = _mm512_set1_ps(p[size_t(j) * kChunk + size_t(i)]);
        #pragma GCC unroll 8
        for (int k = 0; k < V; ++k) acc[j][k] = _mm512_fmadd_ps(wv, x[k], acc[j][k]);
      }
    }
    #pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j)
      #pragma GCC unroll 8
      for (int k = 0; k < V; ++k) _mm512_storeu_ps(parts[j].acc + c + 16 * k, acc[j][k]);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Online-softmax update of one query from its block of scores (turned into weights in place).
void softmax_update(Partial& P, float* s, int n, int valid, int d) {
  if (valid <= 0) {
    std::fill(s, s + n, 0.0f);
    return;
  }
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int t = 0;
  for (; t + 8 <= valid; t += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + t));
  float mc = -INFINITY;
  {
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, vm);
    for (float x : tmp) mc = std::max(mc, x);
  }
  for (; t < valid; ++t) mc = std::max(mc, s[t]);
  const float m_new = std::max(P.m, mc);
  if (m_new != P.m) {
    const float corr = std::exp(P.m - m_new);
    P.l *= corr;
    const __m256 vc = _mm256_set1_ps(corr);
    for (int i = 0; i < d; i += 8) _mm256_storeu_ps(P.acc + i, _mm256_mul_ps(_mm256_loadu_ps(P.acc + i), vc));
    P.m = m_new;
  }
  const __m256 vmax = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (t = 0; t + 8 <= valid; t += 8) {
    __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(s + t), vmax));
    _mm256_storeu_ps(s + t, e);
    sum = _mm256_add_ps(sum, e);
  }
  float l = hsum(sum);
  for (; t < valid; ++t) {
    s[t] = std::exp(s[t] - m_new);
    l += s[t];
  }
  for (; t < n; ++t) s[t] = 0.0f;
  P.l += l;
}

template <int BITS, int NQ>
void block_nq(const KvLayerView& kv, int g, const float* q, const int* limits, int t0, int t1, Partial* parts, float* scratch,
              float* work) {
  int tmax = t0;  // tokens any of these queries can see
  #pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) tmax = std::max(tmax, std::min(t1, limits[j]));
  if (tmax == t0) return;
  const int d = kv.head_dim, gs = BITS == 16 ? d : kv.group_size;
  const bool wide16 = BITS == 16 && d % 16 == 0 && avx512_active();  // fp16 in 512-bit vectors
  if (wide16) scores16_512<NQ>(kv, g, q, t0, tmax, scratch);
  else scores<BITS, NQ>(kv, g, q, t0, tmax, scratch, work);
  #pragma GCC unroll 8
  for (int j = 0; j < NQ; ++j) softmax_update(parts[j], scratch + size_t(j) * kChunk, tmax - t0, std::min(tmax, limits[j]) - t0, d);
  if (wide16) {  // slabs of up to 16 accumulators
    if (d % 128 == 0 && NQ <= 2) weighted_sum16_512<NQ, 128>(kv, g, scratch, t0, tmax, parts);
    else if (d % 64 == 0) weighted_sum16_512<NQ, 64>(kv, g, scratch, t0, tmax, parts);
    else if (d % 32 == 0) weighted_sum16_512<NQ, 32>(kv, g, scratch, t0, tmax, parts);
    else weighted_sum16_512<NQ, 16>(kv, g, scratch, t0, tmax, parts);
    return;
  }
  if constexpr (BITS == 4) {
    if (gs % 32 == 0 && avx512_active()) {
      if (NQ <= 2 && d % 128 == 0) {  // 128-column slabs (16 accumulators per query), a weight per group
        if (gs % 128 == 0) weighted_sum_q4_512<NQ, 128>(kv, g, scratch, t0, tmax, parts, work);
        else if (gs == 64) weighted_sum_q4_512<NQ, 128, 64>(kv, g, scratch, t0, tmax, parts, work);
        else weighted_sum_q4_512<NQ, 128, 32>(kv, g, scratch, t0, tmax, parts, work);
      } else if (gs % 64 == 0)
        weighted_sum_q4_512<NQ, 64>(kv, g, scratch, t0, tmax, parts, work);
      else
        weighted_sum_q4_512<NQ, 32>(kv, g, scratch, t0, tmax, parts, work);
      return;
    }
    if (gs % 16 == 0) {
      if (NQ <= 2 && gs % 32 == 0)
        weighted_sum_q4<NQ, 32>(kv, g, scratch, t0, tmax, parts, work);
      else
        weighted_sum_q4<NQ, 16>(kv, g, scratch, t0, tmax, parts, work);
      return;
    }
  }
  if (NQ <= 2 && gs % 32 == 0)
    weighted_sum<BITS, NQ, 32>(kv, g, scratch, t0, tmax, parts, work);
  else if (gs % 16 == 0)
    weighted_sum<BITS, NQ, 16>(kv, g, scratch, t0, tmax, parts, work);
  else
    weighted_sum<BITS, NQ, 8>(kv, g, scratch, t0, tmax, parts, work);
}

template <int BITS>
void block_bits(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1, Partial* parts, float* scratch) {
  const int d = kv.head_dim;
  for (int j = 0; j < nq; j += 4) {
    const float* qj = q + size_t(j) * d;
    float* sj = scratch + size_t(j) * kChunk;
    float* work = scratch + size_t(nq) * kChunk;
    switch (std::min(4, nq - j)) {
      case 1: block_nq<BITS, 1>(kv, g, qj, limits + j, t0, t1, parts + j, sj, work); break;
      case 2: block_nq<BITS, 2>(kv, g, qj, limits + j, t0, t1, parts + j, sj, work); break;
      case 3: block_nq<BITS, 3>(kv, g, qj, limits + j, t0, t1, parts + j, sj, work); break;
      default: block_nq<BITS, 4>(kv, g, qj, limits + j, t0, t1, parts + j, sj, work); break;
    }
  }
}

}  // namespace

void block_avx2(const KvLayerView& kv, int g, const float* q, int nq, const int* limits, int t0, int t1, Partial* parts,
                float* scratch) {
  switch (kv.bits) {
    case 16: return block_bits<16>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 8: return block_bits<8>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 6: return block_bits<6>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 5: return block_bits<5>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 4: return block_bits<4>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 3: return block_bits<3>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    case 2: return block_bits<2>(kv, g, q, nq, limits, t0, t1, parts, scratch);
    default: return block_ref(kv, g, q, nq, limits, t0, t1, parts, scratch);
  }
}

}  // namespace optiq::kernels::attn
