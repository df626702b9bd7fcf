// AVX2 integer path for quantized weights (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, MLX affine with
// group_size >= 32, any bits). See matmul.h for the accuracy contract.
//
// Every format is seen as 32-element blocks b with  w_i = ws_b * q_i (* sub_scale) + wb_b,  q_i small
// integers. x is quantized per 32-element block to int8 (dx_b = amax_b / 127, xq = rint(x / dx_b)), and
// xs_b = Σ x_i (exact f32). Then
//   y = Σ_b ws_b * dx_b * Σ_i q_i * xq_i  +  Σ_b wb_b * xs_b
// The integer dot uses _mm256_maddubs_epi16 (u8 × i8 pairs → i16) and _mm256_madd_epi16 (→ i32).
// Unsigned q (≤ 6 bits) go straight in; signed q (Q8_0, MLX 8-bit as q-128, Q6_K as q-32) use the
// sign trick (|q| × sign(xq, q)) so no i16 pair sum can saturate (2·128·127 < 32768).
// Within a block the element order does not matter as long as q and xq agree, so for MLX 4-bit and
// 2-bit the activations are permuted (even/odd, resp. stride-4) to make the weight unpack cheap.
// The 4-bit formats (MLX 4-bit, Q4_0) take 64 weights per step in a "pair" path, for one row of x and for
// several alike: each row of a batch gets bit for bit what it gets alone.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numeric>
#include <type_traits>
#include <vector>

#include "kernels/matmul_internal.h"
#include "kernels/simd_avx2.h"
#include "quant/ggml_blocks.h"
#include "quant/mlx_affine.h"

namespace optiq::kernels::detail {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 8 f16 values at p, p+stride, ... -> 8 floats
inline __m256 f16x8_strided(const uint8_t* p, size_t stride) {
  auto h = [&](int i) {
    uint16_t v;
    std::memcpy(&v, p + i * stride, 2);
    return short(v);
  };
  // (built in registers: eight 2-byte stores + one 16-byte load would stall store forwarding)
  return _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)));
}

// Per-32-block scale (and optional scaled copy as the offset) from f16 fields at a fixed stride.
inline void strided_params(const uint8_t* p, size_t stride, int64_t nb, float* ws, float* wb,
                           float wb_mul, const uint8_t* pb) {
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    const __m256 d = f16x8_strided(p + b * stride, stride);
    _mm256_storeu_ps(ws + b, d);
    if (pb) _mm256_storeu_ps(wb + b, f16x8_strided(pb + b * stride, stride));
    else if (wb) _mm256_storeu_ps(wb + b, _mm256_mul_ps(d, _mm256_set1_ps(wb_mul)));
  }
  for (; b < nb; ++b) {
    ws[b] = f16(p + b * stride);
    if (pb) wb[b] = f16(pb + b * stride);
    else if (wb) wb[b] = wb_mul * ws[b];
  }
}

// n params of dtype dt (F32/F16/BF16) -> floats
inline void params_to_f32(const uint8_t* p, int64_t n, DType dt, float* out) {
  int64_t i = 0;
  if (dt == DType::F32) {
    std::memcpy(out, p, size_t(n) * 4);
    return;
  }
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    const __m256 f = dt == DType::F16
                         ? _mm256_cvtph_ps(h)
                         : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    _mm256_storeu_ps(out + i, f);
  }
  for (; i < n; ++i) out[i] = quant::load_param(p, i, dt);
}

inline __m256i nibbles_lo_hi(const uint8_t* p) {  // 16 bytes -> [low nibbles | high nibbles]
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

enum class Perm { None, Stride2, Stride4 };

// ---- activations ----------------------------------------------------------------------------
struct QActs {
  int64_t n = 0, cols = 0, nb = 0;
  std::vector<int8_t> q;   // [n][cols], 32-byte blocks
  std::vector<float> d;    // [n][nb]
  std::vector<float> s;    // [n][nb]
};

void quantize_block(const float* src, Perm perm, int8_t* q, float* d, float* s) {
  float tmp[32];
  if (perm == Perm::Stride2) {
    for (int j = 0; j < 16; ++j) {
      tmp[j] = src[2 * j];
      tmp[16 + j] = src[2 * j + 1];
    }
    src = tmp;
  } else if (perm == Perm::Stride4) {
    for (int t = 0; t < 4; ++t)
      for (int i = 0; i < 8; ++i) tmp[8 * t + i] = src[4 * i + t];
    src = tmp;
  }
  __m256 v[4];
  for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(src + 8 * j);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float am = _mm_cvtss_f32(m);
  *d = am / 127.0f;
  *s = hsum(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
  const __m256 id = _mm256_set1_ps(am > 0.0f ? 127.0f / am : 0.0f);
  __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id));  // round to nearest even
  __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
}

void quantize_acts(const float* x, int64_t n, int64_t cols, Perm perm, int threads, QActs& a) {
  a.n = n;
  a.cols = cols;
  a.nb = cols / 32;
  a.q.resize(size_t(n * cols));
  a.d.resize(size_t(n * a.nb));
  a.s.resize(size_t(n * a.nb));
  const int t = n >= 8 ? threads : 1;
  parallel_chunks(n, 1, t, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t b = 0; b < a.nb; ++b)
        quantize_block(x + i * cols + 32 * b, perm, a.q.data() + i * cols + 32 * b,
                       a.d.data() + i * a.nb + b, a.s.data() + i * a.nb + b);
  });
}

// ---- weight formats ---------------------------------------------------------------------------
// Each format: params(ws, wb) fills per-32-block scale and bias for its row; load(b) gives the 32 q
// bytes of block b (in the order of the activation permutation perm()).
struct FmtQ4_1 {
  static constexpr bool kSigned = false, kSubScale = false, kBias = true;
  const uint8_t* row;
  void params(int64_t nb, float* ws, float* wb) const {
    strided_params(row, 20, nb, ws, wb, 0.0f, row + 2);
  }
  __m256i load(int64_t b) const { return nibbles_lo_hi(row + 20 * b + 4); }
  const uint8_t* pf(int64_t b) const { return row + 20 * b; }
  __m256i sub(int64_t) const { return _mm256_setzero_si256(); }
};

struct FmtQ8_0 {
  static constexpr bool kSigned = true, kSubScale = false, kBias = false;
  const uint8_t* row;
  void params(int64_t nb, float* ws, float*) const {
    strided_params(row, 34, nb, ws, nullptr, 0.0f, nullptr);
  }
  __m256i load(int64_t b) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 34 * b + 2));
  }
  const uint8_t* pf(int64_t b) const { return row + 34 * b; }
  __m256i sub(int64_t) const { return _mm256_setzero_si256(); }
};

struct FmtQ4_K {
  static constexpr bool kSigned = false, kSubScale = false, kBias = true;
  const uint8_t* row;
  void params(int64_t nb, float* ws, float* wb) const {
    for (int64_t sb = 0; sb < nb / 8; ++sb) {
      const uint8_t* blk = row + 144 * sb;
      const float d = f16(blk), dmin = f16(blk + 2);
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        quant::q4_k_scale_min(blk + 4, j, &sc, &m);
        ws[8 * sb + j] = d * float(sc);
        wb[8 * sb + j] = -dmin * float(m);
      }
    }
  }
  __m256i load(int64_t b) const {
    const int64_t sb = b >> 3, j = b & 7;
    const __m256i v =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 144 * sb + 16 + 32 * (j >> 1)));
    const __m256i s = (j & 1) ? _mm256_srli_epi16(v, 4) : v;
    return _mm256_and_si256(s, _mm256_set1_epi8(0x0F));
  }
  const uint8_t* pf(int64_t b) const { return row + 18 * b; }
  __m256i sub(int64_t) const { return _mm256_setzero_si256(); }
};

struct FmtQ6_K {
  static constexpr bool kSigned = true, kSubScale = true, kBias = false;
  const uint8_t* row;
  void params(int64_t nb, float* ws, float*) const {
    for (int64_t sb = 0; sb < nb / 8; ++sb) {
      const float d = f16(row + 210 * sb + 208);
      for (int j = 0; j < 8; ++j) ws[8 * sb + j] = d;
    }
  }
  __m256i load(int64_t b) const {
    const int64_t sb = b >> 3, j = b & 7, h = j >> 2, k = j & 3;
    const uint8_t* blk = row + 210 * sb;
    const __m256i ql = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(blk + 64 * h + 32 * (k & 1)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
    const __m128i sl = _mm_cvtsi32_si128(int(4 * (k >> 1)));
    const __m128i sh = _mm_cvtsi32_si128(int(2 * k));
    const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(ql, sl), _mm256_set1_epi8(0x0F));
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, sh), _mm256_set1_epi8(0x03));
    const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(32));
  }
  const uint8_t* pf(int64_t b) const { return row + 26 * b; }
  __m256i sub(int64_t b) const {  // int16 sub-scales: lanes 0-7 -> elements 0-15, 8-15 -> 16-31
    const int64_t sb = b >> 3, j = b & 7;
    const int8_t* sc = reinterpret_cast<const int8_t*>(row + 210 * sb + 192) + 2 * j;
    return _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
  }
};

struct OddConsts {
  alignas(32) int8_t lo[32];
  alignas(32) int8_t hi[32];
  alignas(32) int16_t mul[16];
};
// pshufb indices (a 16-bit window per value) and the left-shift multipliers for 3/5/6-bit unpacking.
constexpr OddConsts make_odd_consts(int bits) {
  OddConsts k{};
  for (int lane = 0; lane < 2; ++lane) {
    for (int v = 0; v < 8; ++v) {
      const int bit = v * bits;
      k.lo[16 * lane + 2 * v] = int8_t(bit / 8);
      k.lo[16 * lane + 2 * v + 1] = int8_t(bit / 8 + 1);
      k.hi[16 * lane + 2 * v] = int8_t(bits + bit / 8);
      k.hi[16 * lane + 2 * v + 1] = int8_t(bits + bit / 8 + 1);
      k.mul[8 * lane + v] = int16_t(1 << (16 - (bit % 8) - bits));
    }
  }
  return k;
}

// MLX affine, group_size >= 32, bits 2, 3, 5, 6, 8 (4 bits take the pair path below). BITS 2 expects
// stride-4 permuted activations.
template <int BITS>
struct FmtMlx {
  static constexpr bool kSigned = BITS == 8, kSubScale = false, kBias = true;
  const uint8_t* row;
  const uint8_t* scales;  // this row's groups
  const uint8_t* biases;
  DType pdt;
  int group_size;
  int64_t nb;
  void params(int64_t nbk, float* ws, float* wb) const {
    const int per = group_size / 32;
    const int64_t groups = nbk / per;
    float sg[1024], bg[1024];  // groups per chunk of the row
    for (int64_t g0 = 0; g0 < groups; g0 += 1024) {
      const int64_t ng = std::min<int64_t>(1024, groups - g0);
      const size_t pb = quant::param_bytes(pdt);
      params_to_f32(scales + g0 * pb, ng, pdt, sg);
      params_to_f32(biases + g0 * pb, ng, pdt, bg);
      if (BITS == 8)  // q is fed as q - 128
        for (int64_t g = 0; g < ng; ++g) bg[g] += 128.0f * sg[g];
      float* wsg = ws + g0 * per;
      float* wbg = wb + g0 * per;
      if (per == 1) {
        std::memcpy(wsg, sg, size_t(ng) * 4);
        std::memcpy(wbg, bg, size_t(ng) * 4);
      } else if (per == 2) {
        int64_t g = 0;
        const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
        const __m256i hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
        for (; g + 8 <= ng; g += 8) {
          const __m256 s8 = _mm256_loadu_ps(sg + g), b8 = _mm256_loadu_ps(bg + g);
          _mm256_storeu_ps(wsg + 2 * g, _mm256_permutevar8x32_ps(s8, lo));
          _mm256_storeu_ps(wsg + 2 * g + 8, _mm256_permutevar8x32_ps(s8, hi));
          _mm256_storeu_ps(wbg + 2 * g, _mm256_permutevar8x32_ps(b8, lo));
          _mm256_storeu_ps(wbg + 2 * g + 8, _mm256_permutevar8x32_ps(b8, hi));
        }
        for (; g < ng; ++g) wsg[2 * g] = wsg[2 * g + 1] = sg[g], wbg[2 * g] = wbg[2 * g + 1] = bg[g];
      } else {
        for (int64_t g = 0; g < ng; ++g)
          for (int j = 0; j < per; ++j) wsg[g * per + j] = sg[g], wbg[g * per + j] = bg[g];
      }
    }
  }
  const uint8_t* pf(int64_t b) const { return row + 4 * BITS * b; }
  __m256i load(int64_t b) const {
    const uint8_t* p = row + 4 * BITS * b;
    if constexpr (BITS == 2) {
      int64_t u;
      std::memcpy(&u, p, 8);
      const __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(u), _mm256_setr_epi64x(0, 2, 4, 6));
      return _mm256_and_si256(v, _mm256_set1_epi8(0x03));
    } else if constexpr (BITS == 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      return _mm256_xor_si256(v, _mm256_set1_epi8(char(0x80)));
    } else {
      return load_odd(p, b == nb - 1);
    }
  }
  // 3/5/6 bits: 32 values in 4*BITS bytes; each 8 values start on a byte boundary. Lane 0 reads bytes
  // [0,16), lane 1 bytes [2*BITS, 2*BITS+16); a 16-bit window per value is shifted into place with a
  // multiply (left shift) and a fixed right shift.
  static constexpr OddConsts kOdd = make_odd_consts(BITS == 2 || BITS == 8 ? 3 : BITS);
  static __m256i load_odd(const uint8_t* p, bool last) {
    alignas(32) uint8_t pad[48];
    if (last) {  // do not read past the end of the row (and of the mapping)
      std::memset(pad, 0, sizeof pad);
      std::memcpy(pad, p, 4 * BITS);
      p = pad;
    }
    const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(kOdd.lo));
    const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(kOdd.hi));
    const __m256i mul = _mm256_load_si256(reinterpret_cast<const __m256i*>(kOdd.mul));
    const __m256i src = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + 2 * BITS),
                                            reinterpret_cast<const __m128i*>(p));
    __m256i a = _mm256_mullo_epi16(_mm256_shuffle_epi8(src, lo), mul);
    __m256i c = _mm256_mullo_epi16(_mm256_shuffle_epi8(src, hi), mul);
    a = _mm256_srli_epi16(a, 16 - BITS);
    c = _mm256_srli_epi16(c, 16 - BITS);
    return _mm256_packus_epi16(a, c);
  }
  __m256i sub(int64_t) const { return _mm256_setzero_si256(); }
};

// ---- kernel ------------------------------------------------------------------------------------
// out[c] = Σ_b comb[c][b] * dot(q_b, xq[c]_b), for NX activation rows.
#define OPTIQ_INLINE inline __attribute__((always_inline))
#define OPTIQ_NOINLINE __attribute__((noinline))

// Decode streams rows from DRAM; the L2 prefetchers stop at 4 KiB pages, so prefetch ahead in software.
constexpr int kPrefetchBytes = 4096;

template <class F, int NX>
OPTIQ_INLINE void qstep(const F& f, int64_t b, int64_t nb, const int8_t* const* xq, const float* comb,
                        __m256 (&acc)[NX]) {
  const __m256i q = f.load(b);
  const __m256i mw = F::kSubScale ? f.sub(b) : _mm256_set1_epi16(1);
  const __m256i qa = F::kSigned ? _mm256_sign_epi8(q, q) : q;
  // Unrolled so that the accumulators live in registers (a rolled loop kept them in memory: a store and
  // a reload per block and activation row).
#pragma GCC unroll 8
  for (int c = 0; c < NX; ++c) {
    __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[c] + 32 * b));
    if (F::kSigned) xv = _mm256_sign_epi8(xv, q);
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xv), mw);
    acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(comb + c * nb + b), acc[c]);
  }
}

// out[c] = Σ_b comb[c][b] * dot(q_b, xq[c]_b), for NX activation rows.
template <class F, int NX>
OPTIQ_INLINE void qdot(const F& f, int64_t nb, const int8_t* const* xq, const float* comb, float* out) {
  if constexpr (NX == 1) {  // four independent FMA chains (FMA latency 4, two FMA pipes)
    __m256 a0[1] = {_mm256_setzero_ps()}, a1[1] = {_mm256_setzero_ps()}, a2[1] = {_mm256_setzero_ps()},
           a3[1] = {_mm256_setzero_ps()};
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(f.pf(b)) + kPrefetchBytes, _MM_HINT_T0);
      qstep<F, 1>(f, b, nb, xq, comb, a0);
      qstep<F, 1>(f, b + 1, nb, xq, comb, a1);
      qstep<F, 1>(f, b + 2, nb, xq, comb, a2);
      qstep<F, 1>(f, b + 3, nb, xq, comb, a3);
    }
    for (; b < nb; ++b) qstep<F, 1>(f, b, nb, xq, comb, a0);
    out[0] = hsum(_mm256_add_ps(_mm256_add_ps(a0[0], a1[0]), _mm256_add_ps(a2[0], a3[0])));
  } else {  // NX independent chains already
    __m256 acc[NX];
#pragma GCC unroll 8
    for (int c = 0; c < NX; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) qstep<F, NX>(f, b, nb, xq, comb, acc);
#pragma GCC unroll 8
    for (int c = 0; c < NX; ++c) out[c] = hsum(acc[c]);
  }
}

inline float dot_f32(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void mul_f32(const float* a, const float* b, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) out[i] = a[i] * b[i];
}

template <class F, int NX>
void rows_x_tile(const std::vector<F>& fmts, const float* ws, const float* wb, int64_t r0,
                 int64_t r1, const QActs& a, int64_t c0, float* y, int64_t rows_total) {
  const int64_t nb = a.nb;
  thread_local std::vector<float> comb;
  comb.resize(size_t(NX * nb));
  const int8_t* xq[NX];
  for (int c = 0; c < NX; ++c) xq[c] = a.q.data() + (c0 + c) * a.cols;
  for (int64_t r = r0; r < r1; ++r) {
    const float* wsr = ws + (r - r0) * nb;
    const float* wbr = wb + (r - r0) * nb;
    for (int c = 0; c < NX; ++c) mul_f32(wsr, a.d.data() + (c0 + c) * nb, nb, comb.data() + c * nb);
    float out[NX];
    qdot<F, NX>(fmts[size_t(r - r0)], nb, xq, comb.data(), out);
    for (int c = 0; c < NX; ++c) {
      float v = out[c];
      if (F::kBias) v += dot_f32(wbr, a.s.data() + (c0 + c) * nb, nb);
      y[(c0 + c) * rows_total + r] = v;
    }
  }
}

template <class F, class MakeF>
void qmatmul_fmt(const WeightView& w, const QActs& a, float* y, int threads, MakeF make) {
  const int64_t nb = a.nb, n = a.n;
  int64_t rb = int64_t((128 * 1024) / std::max<size_t>(1, w.row_bytes));
  rb = std::max<int64_t>(4, std::min<int64_t>(64, rb));
  if (n == 1) rb = 64;
  parallel_chunks(w.rows, rb, threads, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> ws, wb;
    thread_local std::vector<F> fmts;
    ws.resize(size_t((r1 - r0) * nb));
    wb.resize(size_t((r1 - r0) * nb));
    fmts.clear();
    for (int64_t r = r0; r < r1; ++r) {
      fmts.push_back(make(r));
      fmts.back().params(nb, ws.data() + (r - r0) * nb, wb.data() + (r - r0) * nb);
    }
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) rows_x_tile<F, 4>(fmts, ws.data(), wb.data(), r0, r1, a, c, y, w.rows);
    const int64_t rem = n - c;
    if (rem == 3) rows_x_tile<F, 3>(fmts, ws.data(), wb.data(), r0, r1, a, c, y, w.rows);
    if (rem == 2) rows_x_tile<F, 2>(fmts, ws.data(), wb.data(), r0, r1, a, c, y, w.rows);
    if (rem == 1) rows_x_tile<F, 1>(fmts, ws.data(), wb.data(), r0, r1, a, c, y, w.rows);
  });
}

template <class F>
void run_simple(const WeightView& w, const QActs& a, float* y, int threads) {
  qmatmul_fmt<F>(w, a, y, threads, [&](int64_t r) { return F{w.data + size_t(r) * w.row_bytes}; });
}

template <int BITS>
void run_mlx(const WeightView& w, const QActs& a, float* y, int threads) {
  const int64_t groups = w.cols / w.group_size;
  const size_t pb = quant::param_bytes(w.scale_dtype);
  qmatmul_fmt<FmtMlx<BITS>>(w, a, y, threads, [&](int64_t r) {
    return FmtMlx<BITS>{w.data + size_t(r) * w.row_bytes, w.scales + size_t(r * groups) * pb,
                        w.biases + size_t(r * groups) * pb, w.scale_dtype, w.group_size, a.nb};
  });
}

// ---- 4-bit formats: decode (n == 1) and batches (n >= 2) ---------------------------------------
// Matrix-vector products are streamed from memory, so the inner loops keep per-row state in
// registers and process RW rows together (the activation loads are shared between them).
//
// 4-bit formats (MLX 4-bit, Q4_0) take 64 weights (two 32-blocks) per step: one 32-byte weight load
// (two 16-byte loads for Q4_0) gives [block 2p | block 2p+1] in the two 128-bit lanes; the low and
// high nibbles are matched with activations stored in "pair layout" ([lo16(2p) lo16(2p+1)]
// [hi16(2p) hi16(2p+1)]), the two maddubs results are added in int16 (2*2*15*127 < 32768) and one
// madd gives int32 lanes 0-3 for block 2p and 4-7 for block 2p+1; a per-pair vector
// [dx_2p x4 | dx_2p+1 x4] rescales them. The int8 activations and integer dots are those of the general
// path above; batches (nib_gemm) repeat the one-row arithmetic exactly, row by row.

// 64-byte aligned storage: the kernels' 32-byte loads of activations never straddle a cache line.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const Aligned64<U>&) const { return true; }
};

struct DecodeActs {
  int64_t nb = 0, np = 0;   // blocks, blocks taken in pairs
  std::vector<int8_t, Aligned64<int8_t>> q;    // nb*32; pairs [0, np) in pair layout, a trailing odd block as is
  std::vector<float, Aligned64<float>> dx, xs;  // per block: step, exact f32 sum
  std::vector<float, Aligned64<float>> dxv;   // per pair: [dx_2p x4 | dx_2p+1 x4]
  std::vector<float, Aligned64<float>> offv;  // per pair: off_mul * [xs_2p/4 x4 | xs_2p+1/4 x4]
  std::vector<float, Aligned64<float>> xsg;   // per weight group (group_size elements): Σx (MLX bias term)
};

void decode_acts(const float* x, int64_t cols, Perm perm, bool pairs, float off_mul, int group_size,
                 DecodeActs& a) {
  a.nb = cols / 32;
  a.np = pairs ? a.nb / 2 : 0;
  a.q.resize(size_t(cols));
  a.dx.resize(size_t(a.nb));
  a.xs.resize(size_t(a.nb));
  for (int64_t b = 0; b < a.nb; ++b)
    quantize_block(x + 32 * b, perm, a.q.data() + 32 * b, &a.dx[size_t(b)], &a.xs[size_t(b)]);
  a.dxv.resize(size_t(8 * a.np));
  a.offv.resize(size_t(8 * a.np));
  for (int64_t p = 0; p < a.np; ++p) {
    int8_t* q = a.q.data() + 64 * p;
    int8_t tmp[16];
    std::memcpy(tmp, q + 16, 16);
    std::memcpy(q + 16, q + 32, 16);
    std::memcpy(q + 32, tmp, 16);
    for (int j = 0; j < 8; ++j) {
      const int64_t b = 2 * p + j / 4;
      a.dxv[size_t(8 * p + j)] = a.dx[size_t(b)];
      a.offv[size_t(8 * p + j)] = off_mul * 0.25f * a.xs[size_t(b)];
    }
  }
  if (group_size > 0) {
    const int64_t per = group_size / 32, groups = a.nb / per;
    a.xsg.resize(size_t(groups));
    for (int64_t g = 0; g < groups; ++g) {
      float s = 0.0f;
      for (int64_t j = 0; j < per; ++j) s += a.xs[size_t(g * per + j)];
      a.xsg[size_t(g)] = s;
    }
  }
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

constexpr int kDecodeRows = 4;

// Prefetch distance of the one-row 4-bit kernels, in 4-row tiles (OPTIQ_PF_TILES: a tuning knob for experiments).
// 4 (16 rows, ~9 KB of Q4_0 at 1024 columns ahead): +2-4% decode tok/s over 2 on Q4_0 in alternating runs here.
inline int64_t decode_prefetch_tiles() {
  static const int64_t v = [] {
    const char* e = std::getenv("OPTIQ_PF_TILES");
    return e ? int64_t(std::atoi(e)) : int64_t(4);
  }();
  return v;
}

// Decode rows tile. Format K:
//   0 = MLX 4-bit group 64, 3 = MLX 4-bit group 128/256/... (scale broadcast per pair),
//   1 = MLX 4-bit group 32 (two scales per pair), 2 = Q4_0 (f16 scale per block, offset -8).
struct NibDesc {
  const uint8_t* data;
  size_t row_bytes;
  // MLX: scratch for the tile rows' f32 scales (groups each), group shift (pair -> group),
  // the raw scales/biases of the whole matrix.
  float* sc;
  int64_t groups;
  int gshift;
  const uint8_t* scales;
  const uint8_t* biases;
  DType pdt;
};

// Σ_g bf_g * xsg_g as 8 lanes (groups in steps of 8, the rest summed into lane 0 by fma). mlx_row_params
// does the same arithmetic, so the batched and the one-row paths round alike.
OPTIQ_INLINE __m256 bias_lanes(const float* bf, const float* xsg, int64_t groups) {
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= groups; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(bf + g), _mm256_loadu_ps(xsg + g), acc);
  __m128 tail = _mm_setzero_ps();  // explicit fma: the same rounding wherever this is inlined
  for (; g < groups; ++g) tail = _mm_fmadd_ss(_mm_load_ss(bf + g), _mm_load_ss(xsg + g), tail);
  return _mm256_add_ps(acc, _mm256_set_m128(_mm_setzero_ps(), tail));
}

// MLX row r: its group scales as f32 into sc[groups]; returns bias_lanes of its biases, read in place (the
// same arithmetic as bias_lanes over f32 copies, without them: this runs once per row per token).
OPTIQ_INLINE __m256 mlx_row_params(const NibDesc& d, int64_t r, const float* xsg, float* sc) {
  const size_t pb = quant::param_bytes(d.pdt);
  const uint8_t* sp = d.scales + size_t(r * d.groups) * pb;
  const uint8_t* bp = d.biases + size_t(r * d.groups) * pb;
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= d.groups; g += 8) {
    _mm256_storeu_ps(sc + g, load_params8(sp + g * pb, d.pdt));
    acc = _mm256_fmadd_ps(load_params8(bp + g * pb, d.pdt), _mm256_loadu_ps(xsg + g), acc);
  }
  __m128 tail = _mm_setzero_ps();
  for (; g < d.groups; ++g) {
    sc[g] = quant::load_param(sp, g, d.pdt);
    tail = _mm_fmadd_ss(_mm_set_ss(quant::load_param(bp, g, d.pdt)), _mm_load_ss(xsg + g), tail);
  }
  return _mm256_add_ps(acc, _mm256_set_m128(_mm_setzero_ps(), tail));
}

// The int32 lanes of a pair step, Σ over 4 bytes of lo·xa + hi·xb: maddubs twice, added in int16 (no
// overflow: 2·2·15·127 < 32768), madd with ones; or, with VNNI, two vpdpbusd (u8 · s8 summed by 4 into int32),
// the same integers. The VNNI instruction is written as inline assembly, so this file needs no AVX-512 flags
// and the caller checks vnni_active().
template <bool VNNI>
OPTIQ_INLINE __m256i pair_dot(__m256i lo, __m256i hi, __m256i xa, __m256i xb, __m256i ones) {
  if constexpr (VNNI) {
    __m256i acc = _mm256_setzero_si256();
    asm("vpdpbusd %2, %1, %0\n\tvpdpbusd %4, %3, %0" : "+x"(acc) : "x"(lo), "x"(xa), "x"(hi), "x"(xb));
    return acc;
  } else {
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb)), ones);
  }
}

// The codes of a row's pair p (64 weights) as 32 bytes, after asking for the bytes pf ahead: Q4_0 (Q40) the
// 16 code bytes after each of the pair's two f16 scales ([block 2p | block 2p+1]), MLX 4-bit its 32 packed bytes.
template <bool Q40>
OPTIQ_INLINE __m256i pair_codes(const uint8_t* row, int64_t p, int64_t pf) {
  const uint8_t* at = row + (Q40 ? 36 : 32) * p;
  _mm_prefetch(reinterpret_cast<const char*>(at + pf), _MM_HINT_T0);
  if constexpr (Q40)
    return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(at + 20), reinterpret_cast<const __m128i*>(at + 2));
  else
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
}

// One 64-weight step of one row: acc += (scaled) dot of the row's pair p with the activations.
template <int K, bool VNNI>
OPTIQ_INLINE __m256 nib_step(const uint8_t* row, const float* sc, int gshift, int64_t p, int64_t pf,
                             __m256i xa, __m256i xb, __m256 dxv, __m256 offv, __m256i m4,
                             __m256i ones, __m256i perm01, __m256 acc) {
  const __m256i w = pair_codes<K == 2>(row, p, pf);
  const __m256i lo = _mm256_and_si256(w, m4);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
  const __m256 v = _mm256_cvtepi32_ps(pair_dot<VNNI>(lo, hi, xa, xb, ones));
  if constexpr (K == 0) {  // group 64
    return _mm256_fmadd_ps(_mm256_mul_ps(v, dxv), _mm256_broadcast_ss(sc + p), acc);
  } else if constexpr (K == 3) {  // group 128, 256, ...
    return _mm256_fmadd_ps(_mm256_mul_ps(v, dxv), _mm256_broadcast_ss(sc + (p >> gshift)), acc);
  } else if constexpr (K == 1) {  // group 32: [s_2p x4 | s_2p+1 x4]
    double s2;
    std::memcpy(&s2, sc + 2 * p, 8);
    const __m256 s = _mm256_permutevar8x32_ps(_mm256_castpd_ps(_mm256_set1_pd(s2)), perm01);
    return _mm256_fmadd_ps(_mm256_mul_ps(v, dxv), s, acc);
  } else {  // Q4_0: d_b * (dx_b * dot - 8 * xs_b)
    uint16_t h0, h1;
    std::memcpy(&h0, row + 36 * p, 2);
    std::memcpy(&h1, row + 36 * p + 18, 2);
    const __m128i hh = _mm_cvtsi32_si128(int(uint32_t(h0) | (uint32_t(h1) << 16)));
    const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(hh)), perm01);
    return _mm256_fmadd_ps(_mm256_fmadd_ps(v, dxv, offv), s, acc);
  }
}

// The last block of a row with an odd number of blocks (block layout, not pair layout): its term of y.
// s: MLX, the block's scale (group 32 here: a group per block).
template <int K>
OPTIQ_NOINLINE float odd_block(const uint8_t* row, float s, const DecodeActs& a) {
  const int64_t b = a.nb - 1;
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 32 * b));
  const uint8_t* p = K == 2 ? row + 18 * b + 2 : row + 16 * b;
  const int32_t isum =
      hsum_i32(_mm256_madd_epi16(_mm256_maddubs_epi16(nibbles_lo_hi(p), xv), _mm256_set1_epi16(1)));
  const float v = a.dx[size_t(b)] * float(isum);
  if constexpr (K == 2) {
    const float dd = f16(row + 18 * b);
    return dd * v - 8.0f * dd * a.xs[size_t(b)];
  } else {
    return s * v;
  }
}

template <int K, int RW, bool VNNI>
OPTIQ_INLINE void nib_tile(const NibDesc& d, int64_t r, const DecodeActs& a, int64_t pf, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i perm01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const uint8_t* r0 = d.data + size_t(r) * d.row_bytes;
  const uint8_t* r1 = r0 + d.row_bytes;
  const uint8_t* r2 = r1 + d.row_bytes;
  const uint8_t* r3 = r2 + d.row_bytes;
  const float* s0 = d.sc;
  const float* s1 = s0 + d.groups;
  const float* s2 = s1 + d.groups;
  const float* s3 = s2 + d.groups;
  const int gs = d.gshift;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  if constexpr (K != 2) {
    const float* xsg = a.xsg.data();
    acc0 = mlx_row_params(d, r, xsg, d.sc);
    if constexpr (RW > 1) acc1 = mlx_row_params(d, r + 1, xsg, d.sc + d.groups);
    if constexpr (RW > 2) acc2 = mlx_row_params(d, r + 2, xsg, d.sc + 2 * d.groups);
    if constexpr (RW > 3) acc3 = mlx_row_params(d, r + 3, xsg, d.sc + 3 * d.groups);
  }
  const int64_t np = a.np;
  const int8_t* xq = a.q.data();
  const float* dxp = a.dxv.data();
  const float* ofp = a.offv.data();
  for (int64_t p = 0; p < np; ++p) {
    const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 64 * p));
    const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 64 * p + 32));
    const __m256 dxv = _mm256_loadu_ps(dxp + 8 * p);
    const __m256 offv = K == 2 ? _mm256_loadu_ps(ofp + 8 * p) : dxv;
    acc0 = nib_step<K, VNNI>(r0, s0, gs, p, pf, xa, xb, dxv, offv, m4, ones, perm01, acc0);
    if constexpr (RW > 1) acc1 = nib_step<K, VNNI>(r1, s1, gs, p, pf, xa, xb, dxv, offv, m4, ones, perm01, acc1);
    if constexpr (RW > 2) acc2 = nib_step<K, VNNI>(r2, s2, gs, p, pf, xa, xb, dxv, offv, m4, ones, perm01, acc2);
    if constexpr (RW > 3) acc3 = nib_step<K, VNNI>(r3, s3, gs, p, pf, xa, xb, dxv, offv, m4, ones, perm01, acc3);
  }
  out[0] = hsum(acc0);
  if constexpr (RW > 1) out[1] = hsum(acc1);
  if constexpr (RW > 2) out[2] = hsum(acc2);
  if constexpr (RW > 3) out[3] = hsum(acc3);
  if (2 * np < a.nb) {  // odd trailing block (block layout, not pair layout)
    const uint8_t* rows[4] = {r0, r1, r2, r3};
    for (int i = 0; i < RW; ++i) out[i] += odd_block<K>(rows[i], K == 2 ? 0.0f : d.sc[i * d.groups + a.nb - 1], a);
  }
}

// y_i = W_i x for `count` weights of one format and shape of row (cols, group) over the same activations:
// their rows form one range, split over the threads in one parallel region.
template <int K, bool VNNI>
void nib_decode(const WeightView* ws, float* const* ys, int count, const DecodeActs& a, int threads, int64_t pf_tiles,
                const LowRankRun* lr) {
  constexpr bool mlx = K != 2;
  const WeightView& w0 = ws[0];
  const int64_t groups = mlx ? w0.cols / w0.group_size : 0;
  int gshift = 0;
  if (mlx)
    while ((int64_t(64) << gshift) < w0.group_size) ++gshift;
  int64_t total = 0;
  for (int i = 0; i < count; ++i) total += ws[i].rows;
  decode_rows(total, kDecodeRows, threads, [&](int64_t g0, int64_t g1) {
    thread_local std::vector<float> sc;
    sc.resize(size_t(kDecodeRows * groups));
    int64_t off = 0;
    for (int i = 0; i < count; off += ws[i].rows, ++i) {
      const WeightView& w = ws[i];
      const int64_t r0 = std::max(g0, off) - off, r1 = std::min(g1, off + w.rows) - off;
      if (r0 >= r1) continue;
      float* y = ys[i];
      const NibDesc d{w.data, w.row_bytes, sc.data(), groups, gshift, w.scales, w.biases, w.scale_dtype};
      const int64_t pf = pf_tiles * kDecodeRows * int64_t(w.row_bytes);
      int64_t r = r0;
      for (; r + kDecodeRows <= r1; r += kDecodeRows) nib_tile<K, kDecodeRows, VNNI>(d, r, a, pf, y + r);
      const int64_t rw = r1 - r;
      if (rw == 3) nib_tile<K, 3, VNNI>(d, r, a, pf, y + r);
      if (rw == 2) nib_tile<K, 2, VNNI>(d, r, a, pf, y + r);
      if (rw == 1) nib_tile<K, 1, VNNI>(d, r, a, pf, y + r);
    }
  }, lr);
}

// The order activations are quantized in to meet a format's packed codes.
Perm act_perm(const WeightView& w) {
  if (w.format == WeightFormat::MlxAffine && w.bits == 4) return Perm::Stride2;
  if (w.format == WeightFormat::MlxAffine && w.bits == 2) return Perm::Stride4;
  return Perm::None;
}

// The one-row 4-bit path (MLX 4-bit with groups of 32 or more, Q4_0) for weights that share x; false when
// they do not all take it alike.
bool nib_decode_all(const WeightView* ws, float* const* ys, int count, const float* x, const LowRankRun* lr = nullptr) {
  const WeightView& w0 = ws[0];
  const bool mlx4 = w0.format == WeightFormat::MlxAffine && w0.bits == 4 && w0.group_size >= 32;
  if (!mlx4 && w0.format != WeightFormat::Q4_0) return false;
  double macs = 0;
  for (int i = 0; i < count; ++i) {
    const WeightView& w = ws[i];
    if (w.format != w0.format || w.cols != w0.cols || w.bits != w0.bits || w.group_size != w0.group_size) return false;
    macs += double(w.rows) * double(w.cols);
  }
  thread_local DecodeActs da;
  decode_acts(x, w0.cols, act_perm(w0), true, mlx4 ? 0.0f : -8.0f, mlx4 ? w0.group_size : 0, da);
  const int threads = threads_for(macs);
  const int64_t pf_tiles = decode_prefetch_tiles();
  auto run = [&](auto vnni) {
    constexpr bool V = decltype(vnni)::value;
    if (!mlx4) nib_decode<2, V>(ws, ys, count, da, threads, pf_tiles, lr);
    else if (w0.group_size == 32) nib_decode<1, V>(ws, ys, count, da, threads, pf_tiles, lr);
    else if (w0.group_size == 64) nib_decode<0, V>(ws, ys, count, da, threads, pf_tiles, lr);
    else nib_decode<3, V>(ws, ys, count, da, threads, pf_tiles, lr);
  };
  if (vnni_active()) run(std::true_type{});
  else run(std::false_type{});
  return true;
}

// ---- 4-bit, several rows of x (n >= 2) --------------------------------------------------------
// The same arithmetic as nib_tile for each (weight row, x row): the same pair layout of the activations,
// the same scale vector per pair, the same order of f32 operations. So a batch of rows gives bit for bit
// what each row gives alone, and a sequence decoded in a batch continues exactly as it would alone.
// Register tile: RW weight rows (unpacked once per pair) times NX x rows (loaded once per pair).

// Row r's scale vector of each pair, as nib_step<k> forms it: sv[8p..8p+8). For MLX group 32 (k 1) and Q4_0
// (k 2); MLX with larger groups keeps one scale per group (see nib_gemm).
void pair_scales(int k, const NibDesc& d, int64_t r, int64_t np, float* sc, float* sv) {
  const uint8_t* row = d.data + size_t(r) * d.row_bytes;
  if (k != 2) params_to_f32(d.scales + size_t(r * d.groups) * quant::param_bytes(d.pdt), d.groups, d.pdt, sc);
  for (int64_t p = 0; p < np; ++p) {
    const float lo = k == 2 ? f16(row + 36 * p) : sc[2 * p];
    const float hi = k == 2 ? f16(row + 36 * p + 18) : sc[2 * p + 1];
    _mm256_storeu_ps(sv + 8 * p, _mm256_set_m128(_mm_set1_ps(hi), _mm_set1_ps(lo)));
  }
}

// Weight rows are prefetched this many rows ahead: a whole 16-row block (kGemmRB), so the next block's
// rows are in cache when pair_scales reads Q4_0's scale fields. 8 rows before: in an 8-stream server step on
// Q4_0 that pass took 22% of the time waiting for memory, 12.5% with 16 (aggregate tok/s +9% in alternating
// runs). (8 against none: 89 to 99 GFLOP/s on MLX 4-bit, 89 to 96 on Q4_0, 32000x1024 from DRAM, 2 threads.)
constexpr int64_t kGemmPf = 16;
// K: 0 for MLX with groups of 64 or more (sv holds a scale per group), 1 for MLX group 32 (sv holds the scale
// vector of each pair), 2 for Q4_0 (likewise).

// A row's scale vector of pair p, from its part of sv.
template <int K>
OPTIQ_INLINE __m256 pair_scale(const float* sv_row, int64_t p, int gshift) {
  if constexpr (K == 0) return _mm256_broadcast_ss(sv_row + (p >> gshift));  // one scale per pair, kept per group
  else return _mm256_loadu_ps(sv_row + 8 * p);
}

// The accumulator a row starts from for x row a: MLX's bias term (biases after sv's pair part), Q4_0 zero.
template <int K>
OPTIQ_INLINE __m256 row_start(const float* sv_row, int64_t np, const DecodeActs& a, int64_t groups) {
  if constexpr (K == 2) return _mm256_setzero_ps();
  else return bias_lanes(sv_row + 8 * np + 1, a.xsg.data(), groups);
}

template <int K, int RW, int NX, bool VNNI>
OPTIQ_INLINE void nib_gemm_tile(const NibDesc& d, int64_t r, const float* sv, int64_t sv_stride,
                                const DecodeActs* const* xs, float* y, int64_t y_stride) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t np = xs[0]->np;
  __m256 acc[RW][NX];
  const uint8_t* rows[RW];
#pragma GCC unroll 4
  for (int i = 0; i < RW; ++i) {
    rows[i] = d.data + size_t(r + i) * d.row_bytes;
#pragma GCC unroll 4
    for (int c = 0; c < NX; ++c) acc[i][c] = row_start<K>(sv + i * sv_stride, np, *xs[c], d.groups);
  }
  for (int64_t p = 0; p < np; ++p) {
    __m256i lo[RW], hi[RW];
    __m256 s[RW];
#pragma GCC unroll 4
    for (int i = 0; i < RW; ++i) {
      s[i] = pair_scale<K>(sv + i * sv_stride, p, d.gshift);
      const __m256i w = pair_codes<K == 2>(rows[i], p, kGemmPf * int64_t(d.row_bytes));
      lo[i] = _mm256_and_si256(w, m4);
      hi[i] = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
    }
#pragma GCC unroll 4
    for (int c = 0; c < NX; ++c) {
      const DecodeActs& a = *xs[c];
      const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 64 * p));
      const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 64 * p + 32));
      const __m256 dxv = _mm256_loadu_ps(a.dxv.data() + 8 * p);
#pragma GCC unroll 4
      for (int i = 0; i < RW; ++i) {
        const __m256 v = _mm256_cvtepi32_ps(pair_dot<VNNI>(lo[i], hi[i], xa, xb, ones));
        if constexpr (K == 2)
          acc[i][c] = _mm256_fmadd_ps(_mm256_fmadd_ps(v, dxv, _mm256_loadu_ps(a.offv.data() + 8 * p)), s[i], acc[i][c]);
        else
          acc[i][c] = _mm256_fmadd_ps(_mm256_mul_ps(v, dxv), s[i], acc[i][c]);
      }
    }
  }
  for (int i = 0; i < RW; ++i)
    for (int c = 0; c < NX; ++c) {
      float o = hsum(acc[i][c]);
      if (2 * np < xs[c]->nb) o += odd_block<K>(rows[i], sv[i * sv_stride + 8 * np], *xs[c]);
      y[c * y_stride + r + i] = o;
    }
}

// Register tile: weight rows x rows of x (2x4 measured best for both formats against 1x4, 2x3, 2x2, 3x2, 4x2).
constexpr int kGemmRW = 2, kGemmNX = 4, kGemmRB = 16;

template <int K, int NX, bool VNNI>
void nib_gemm_rows(const NibDesc& d, int64_t r0, int64_t r1, const float* sv, int64_t sv_stride,
                   const DecodeActs* const* xs, float* y, int64_t y_stride) {
  int64_t r = r0;
  for (; r + kGemmRW <= r1; r += kGemmRW)
    nib_gemm_tile<K, kGemmRW, NX, VNNI>(d, r, sv + (r - r0) * sv_stride, sv_stride, xs, y, y_stride);
  for (; r < r1; ++r) nib_gemm_tile<K, 1, NX, VNNI>(d, r, sv + (r - r0) * sv_stride, sv_stride, xs, y, y_stride);
}

// AVX-512 + VNNI: the same tile with two weight rows side by side in each 512-bit register (row i in the
// low half, row i+1 in the high half) and each x row's pair broadcast to both halves, so every 256-bit half
// runs nib_gemm_tile's exact sequence of operations for its row: the results are bit for bit those of the
// 256-bit path, with half the instructions per multiply-add. RW2: row pairs (2·RW2 weight rows).
#define OPTIQ_VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
OPTIQ_VNNI512 inline __m512 join(__m256 lo, __m256 hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

template <int K, int RW2, int NX>
OPTIQ_VNNI512 OPTIQ_INLINE void nib_gemm_tile_512(const NibDesc& d, int64_t r, const float* sv, int64_t sv_stride,
                                                  const DecodeActs* const* xs, float* y, int64_t y_stride) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const int64_t np = xs[0]->np;
  __m512 acc[RW2][NX];
  const uint8_t* rows[2 * RW2];
  for (int i = 0; i < 2 * RW2; ++i) rows[i] = d.data + size_t(r + i) * d.row_bytes;
#pragma GCC unroll 8
  for (int j = 0; j < RW2; ++j)
#pragma GCC unroll 8
    for (int c = 0; c < NX; ++c)
      acc[j][c] = join(row_start<K>(sv + (2 * j) * sv_stride, np, *xs[c], d.groups),
                       row_start<K>(sv + (2 * j + 1) * sv_stride, np, *xs[c], d.groups));
  for (int64_t p = 0; p < np; ++p) {
    __m512i lo[RW2], hi[RW2];
    __m512 s[RW2];
#pragma GCC unroll 8
    for (int j = 0; j < RW2; ++j) {
      s[j] = join(pair_scale<K>(sv + (2 * j) * sv_stride, p, d.gshift), pair_scale<K>(sv + (2 * j + 1) * sv_stride, p, d.gshift));
      const int64_t pf = kGemmPf * int64_t(d.row_bytes);
      const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(pair_codes<K == 2>(rows[2 * j], p, pf)),
                                           pair_codes<K == 2>(rows[2 * j + 1], p, pf), 1);
      lo[j] = _mm512_and_si512(w, m4);
      hi[j] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
    }
#pragma GCC unroll 8
    for (int c = 0; c < NX; ++c) {
      const DecodeActs& a = *xs[c];
      const __m512i xa = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 64 * p)));
      const __m512i xb =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + 64 * p + 32)));
      const __m512 dxv = _mm512_broadcast_f32x8(_mm256_loadu_ps(a.dxv.data() + 8 * p));
#pragma GCC unroll 8
      for (int j = 0; j < RW2; ++j) {
        const __m512 v =
            _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[j], xa), hi[j], xb));
        if constexpr (K == 2)
          acc[j][c] = _mm512_fmadd_ps(
              _mm512_fmadd_ps(v, dxv, _mm512_broadcast_f32x8(_mm256_loadu_ps(a.offv.data() + 8 * p))), s[j], acc[j][c]);
        else
          acc[j][c] = _mm512_fmadd_ps(_mm512_mul_ps(v, dxv), s[j], acc[j][c]);
      }
    }
  }
  for (int j = 0; j < RW2; ++j)
    for (int c = 0; c < NX; ++c)
      for (int h = 0; h < 2; ++h) {
        const int i = 2 * j + h;
        float o = hsum(h ? _mm512_extractf32x8_ps(acc[j][c], 1) : _mm512_castps512_ps256(acc[j][c]));
        if (2 * np < xs[c]->nb) o += odd_block<K>(rows[i], sv[i * sv_stride + 8 * np], *xs[c]);
        y[c * y_stride + r + i] = o;
      }
}

// Tile: 4 weight rows (two registers) x 8 rows of x. Speed over the AVX2 path without VNNI (matmul_bench
// --avx512-ab; the 256-bit VNNI tile gives 1.09-1.19x): 4x4 1.55-1.75x, 8x4 about the same, 2x16 1.4-1.65x,
// 4x8 1.65-2.0x.
constexpr int kGemm512RW2 = 2, kGemm512NX = 8;

template <int K, int NX>
OPTIQ_VNNI512 void nib_gemm_rows_512(const NibDesc& d, int64_t r0, int64_t r1, const float* sv, int64_t sv_stride,
                                     const DecodeActs* const* xs, float* y, int64_t y_stride) {
  int64_t r = r0;
  for (; r + 2 * kGemm512RW2 <= r1; r += 2 * kGemm512RW2)
    nib_gemm_tile_512<K, kGemm512RW2, NX>(d, r, sv + (r - r0) * sv_stride, sv_stride, xs, y, y_stride);
  for (; r < r1; ++r) nib_gemm_tile<K, 1, NX, true>(d, r, sv + (r - r0) * sv_stride, sv_stride, xs, y, y_stride);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Rows [r0, r1) of w (their scale vectors at sv) times all n rows of x.
template <int K, bool VNNI>
void nib_gemm_cols(const NibDesc& d, int64_t r0, int64_t r1, const float* sv, int64_t sv_stride,
                   const DecodeActs* const* xs, int64_t n, float* y, int64_t rows) {
  // The 512-bit tiles where VNNI is on (with AVX-512 active), else the 256-bit ones: NX x rows from c on.
  const bool wide = VNNI && avx512_active();
  int64_t c = 0;
  auto step = [&](auto nx) {
    constexpr int NX = decltype(nx)::value;
    if (wide) nib_gemm_rows_512<K, NX>(d, r0, r1, sv, sv_stride, xs + c, y + c * rows, rows);
    else nib_gemm_rows<K, NX, VNNI>(d, r0, r1, sv, sv_stride, xs + c, y + c * rows, rows);
    c += NX;
  };
  for (; wide && c + kGemm512NX <= n; c += kGemm512NX)
    nib_gemm_rows_512<K, kGemm512NX>(d, r0, r1, sv, sv_stride, xs + c, y + c * rows, rows);
  while (c + kGemmNX <= n) step(std::integral_constant<int, kGemmNX>{});
  if (n - c == 3) step(std::integral_constant<int, 3>{});
  if (n - c == 2) step(std::integral_constant<int, 2>{});
  if (n - c == 1) step(std::integral_constant<int, 1>{});
}

// k: the format as nib_decode's K.
void nib_gemm(int k, const WeightView& w, const std::vector<DecodeActs>& xs, float* y, int threads) {
  const bool mlx = k != 2;
  const int64_t n = int64_t(xs.size()), np = xs[0].np, nb = xs[0].nb;
  const int64_t groups = mlx ? w.cols / w.group_size : 0;
  int gshift = 0;
  if (mlx)
    while ((int64_t(64) << gshift) < w.group_size) ++gshift;
  // Per row: 8 floats per pair (MLX with groups of 64 or more: one per group, the kernels broadcast it), the
  // last block's scale (MLX group 32, odd block count), the biases (MLX).
  const bool compact = k == 0 || k == 3;
  const int64_t sv_stride = 8 * np + 1 + groups;
  const bool vnni = vnni_active();
  std::vector<const DecodeActs*> ptrs(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) ptrs[size_t(c)] = &xs[size_t(c)];
  decode_rows(w.rows, kGemmRB, threads, [&](int64_t g0, int64_t g1) {
    thread_local std::vector<float> sv, sc;
    sv.resize(size_t(kGemmRB * sv_stride));
    sc.resize(size_t(std::max<int64_t>(groups, 1)));
    const NibDesc d{w.data, w.row_bytes, sc.data(), groups, gshift, w.scales, w.biases, w.scale_dtype};
    for (int64_t b0 = g0; b0 < g1; b0 += kGemmRB) {
      const int64_t b1 = std::min(g1, b0 + kGemmRB);
      for (int64_t r = b0; r < b1; ++r) {
        float* o = sv.data() + (r - b0) * sv_stride;
        if (compact)
          params_to_f32(w.scales + size_t(r * groups) * quant::param_bytes(w.scale_dtype), groups, w.scale_dtype, o);
        else
          pair_scales(k, d, r, np, sc.data(), o);
        o[8 * np] = mlx && 2 * np < nb ? sc[size_t(nb - 1)] : 0.0f;
        if (mlx)
          params_to_f32(w.biases + size_t(r * groups) * quant::param_bytes(w.scale_dtype), groups, w.scale_dtype,
                        o + 8 * np + 1);
      }
      auto run = [&](auto vnni_t) {
        constexpr bool V = decltype(vnni_t)::value;
        if (compact) nib_gemm_cols<0, V>(d, b0, b1, sv.data(), sv_stride, ptrs.data(), n, y, w.rows);
        else if (mlx) nib_gemm_cols<1, V>(d, b0, b1, sv.data(), sv_stride, ptrs.data(), n, y, w.rows);
        else nib_gemm_cols<2, V>(d, b0, b1, sv.data(), sv_stride, ptrs.data(), n, y, w.rows);
      };
      if (vnni) run(std::true_type{});
      else run(std::false_type{});
    }
  });
}

// n rows of x through the 4-bit pair path; false when w does not take it (see nib_decode_all).
bool nib_gemm_all(const WeightView& w, const float* x, int64_t n, float* y) {
  const bool mlx4 = w.format == WeightFormat::MlxAffine && w.bits == 4 && w.group_size >= 32;
  if (!mlx4 && w.format != WeightFormat::Q4_0) return false;
  thread_local std::vector<DecodeActs> acts;
  std::vector<DecodeActs>& xs = acts;  // the caller's, also inside the parallel region
  xs.resize(size_t(n));
  const int threads = threads_for(double(w.rows) * double(w.cols) * double(n));
  const Perm perm = act_perm(w);
  parallel_chunks(n, 1, n >= 8 ? threads : 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      decode_acts(x + i * w.cols, w.cols, perm, true, mlx4 ? 0.0f : -8.0f, mlx4 ? w.group_size : 0, xs[size_t(i)]);
  });
  nib_gemm(!mlx4 ? 2 : w.group_size == 32 ? 1 : w.group_size == 64 ? 0 : 3, w, xs, y, threads);
  return true;
}

}  // namespace

void quantize_block32(const float* src, int8_t* q, float* d, float* s) { quantize_block(src, Perm::None, q, d, s); }

bool qmatmul_avx2_decode_shared(const WeightView* ws, float* const* ys, int count, const float* x, const LowRankRun* lr) {
  return nib_decode_all(ws, ys, count, x, lr);
}

bool qmatmul_avx2_supported(const WeightView& w) {
  switch (w.format) {
    case WeightFormat::Q4_0:
    case WeightFormat::Q4_1:
    case WeightFormat::Q8_0:
    case WeightFormat::Q4_K:
    case WeightFormat::Q6_K: return true;
    case WeightFormat::MlxAffine: return w.group_size >= 32;
    default: return false;
  }
}

void qmatmul_avx2(const WeightView& w, const float* x, int64_t n, float* y) {
  if (n == 1 ? nib_decode_all(&w, &y, 1, x) : nib_gemm_all(w, x, n, y)) return;
  const int threads = threads_for(double(w.rows) * double(w.cols) * double(n));
  thread_local QActs acts;
  quantize_acts(x, n, w.cols, act_perm(w), threads, acts);
  switch (w.format) {
    case WeightFormat::Q4_1: return run_simple<FmtQ4_1>(w, acts, y, threads);
    case WeightFormat::Q8_0: return run_simple<FmtQ8_0>(w, acts, y, threads);
    case WeightFormat::Q4_K: return run_simple<FmtQ4_K>(w, acts, y, threads);
    case WeightFormat::Q6_K: return run_simple<FmtQ6_K>(w, acts, y, threads);
    case WeightFormat::MlxAffine:
      switch (w.bits) {
        case 2: return run_mlx<2>(w, acts, y, threads);
        case 3: return run_mlx<3>(w, acts, y, threads);
        case 5: return run_mlx<5>(w, acts, y, threads);
        case 6: return run_mlx<6>(w, acts, y, threads);
        case 8: return run_mlx<8>(w, acts, y, threads);
      }
      return;
    default: return;
  }
}

}  // namespace optiq::kernels::detail
