// Kernels for 4-bit weights repacked in groups of 16 rows (pack_weight, matmul.h): AVX-512 VNNI where the CPU
// has it, else AVX2 (maddubs; see "AVX2" below), on the same layout with the same results.
//
// Layout of one group of 16 rows (a "row group"; row groups follow one another in row order):
//   Q4_0: per 32-column block, the 16 rows' f16 scales d (32 bytes), then the block's codes (256 bytes);
//   MLX 4-bit: per weight group (group_size columns), the 16 rows' scales, then their biases (in the
//   checkpoint's dtype), then the group's 32-column blocks of codes (256 bytes each).
// A block's codes are four 64-byte chunks. Chunk c holds columns 8c..8c+7 of the block: its byte 4r+j has row
// r's code of column 8c+j in the low nibble and of column 8c+4+j in the high one. So a chunk's low nibbles are
// the 16 rows' codes of columns 8c..8c+3 as vpdpbusd takes them (4 bytes per int32 lane, a lane per row), its
// high nibbles those of columns 8c+4..8c+7, and the activations of those 4 columns are one broadcast int32.
// The rows past the matrix's last (padding of its last row group) have zero codes and scales and are never
// stored.
//
// x is quantized per 32-column block as for the other 4-bit kernels (int8 q, dx_b = max|x_b| / 127,
// xs_b = Σ x_b exact in f32), and each (row, x row) is summed in one fixed order, block by block:
//   Q4_0:  acc = fma(fma(I_b, dx_b, -8·xs_b), d_b, acc)
//   MLX:   per group g first acc = fma(bias_g, Σ_{b∈g} xs_b, acc), then per block acc = fma(I_b·dx_b, scale_g, acc)
// with I_b the exact integer dot of the block's codes and q. A lane is a row and the x rows of a tile are
// independent, so a row of x gets the same numbers alone or in a batch of any size.
//
// Against the pair kernels of qmatmul_avx2.cpp, which keep 4 partial sums of a block per row in a register and
// convert and scale them all, this converts and scales once per block for 16 rows: at 8 rows of x the pair
// tile spends 3 float operations per 2 vpdpbusd, this one 3 per 8.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "kernels/matmul_internal.h"
#include "kernels/simd_avx2.h"
#include "quant/mlx_affine.h"
#include "util/error.h"

namespace optiq::kernels {
namespace detail {
namespace {

// (gcc 12 warns of an uninitialized operand inside the AVX-512 intrinsics' headers: a false positive, as in
// qmatmul_avx2.cpp)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define OPTIQ_PACKED512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define OPTIQ_PINLINE inline __attribute__((always_inline))

constexpr int64_t kGroupRows = 16;
constexpr size_t kBlockCodes = 256;  // one 32-column block of a row group
// Bytes ahead of the one being read that the kernel asks for (about 8 blocks).
constexpr int64_t kPackedPf = 2048;
// Rows of x per AVX2 tile: 2 int16 block sums per row of x and the 4 halves of a chunk's codes in the 16
// registers (the float sums stay in memory). Against 3 rows (3 + 3 + 2 for 8), in matmul_bench alternating call
// by call: 1.01-1.06x at 8 rows, 1.09-1.12x at 4, 1.03-1.07x at 128.
constexpr int kTile256 = 4;

bool packable(const WeightView& w) {
  if (!w.data || w.rows <= 0 || w.cols <= 0 || w.cols % 32) return false;
  if (w.format == WeightFormat::Q4_0) return true;
  return w.format == WeightFormat::MlxAffine && w.bits == 4 && w.group_size >= 32 && w.group_size % 32 == 0 &&
         w.cols % w.group_size == 0 && w.scales && w.biases;
}

size_t param_bytes(const WeightView& w) {
  return w.format == WeightFormat::Q4_0 ? 2 : size_t(quant::param_bytes(w.scale_dtype));
}

// Bytes of one row group.
size_t group_bytes(const WeightView& w) {
  const int64_t nb = w.cols / 32;
  if (w.format == WeightFormat::Q4_0) return size_t(nb) * (32 + kBlockCodes);
  return size_t(w.cols / w.group_size) * 32 * param_bytes(w) + size_t(nb) * kBlockCodes;
}

// The low nibbles of v's 8 bytes side by side (byte i's in bits 4i). Shifts and masks, not pext: pext and pdep
// are microcode, hundreds of cycles each, on AMD CPUs before Zen 3, and packing runs over every weight at load.
uint32_t gather_nibbles(uint64_t v) {
  v &= 0x0F0F0F0F0F0F0F0Full;
  v = (v | (v >> 4)) & 0x00FF00FF00FF00FFull;
  v = (v | (v >> 8)) & 0x0000FFFF0000FFFFull;
  return uint32_t(v | (v >> 16));
}

// The inverse for 4 nibbles (bits 4i of v): nibble i into the low nibble of byte i.
uint32_t spread_nibbles(uint32_t v) {
  v &= 0xFFFF;
  v = (v | (v << 8)) & 0x00FF00FFu;
  return (v | (v << 4)) & 0x0F0F0F0Fu;
}

// Columns 8k..8k+7 of a row (its bytes at row) as 8 nibbles, column 8k+i in bits 4i.
uint32_t code_word(const WeightView& w, const uint8_t* row, int64_t k) {
  if (w.format == WeightFormat::Q4_0) {  // a block: f16 scale, 16 bytes with column i low and 16 + i high
    const int64_t b = k / 4, c = k % 4;
    uint64_t v;
    std::memcpy(&v, row + 18 * b + 2 + 8 * (c & 1), 8);
    return gather_nibbles(c >= 2 ? v >> 4 : v);
  }
  uint32_t v;  // MLX: little-endian U32 words of 8 codes, column 8k+i in bits 4i
  std::memcpy(&v, row + 4 * k, 4);
  return v;
}

// Block b's codes of rows [r0, r0 + here) (the rest zero) into out (kBlockCodes bytes).
void pack_block(const WeightView& w, int64_t r0, int64_t here, int64_t b, uint8_t* out) {
  std::memset(out, 0, kBlockCodes);
  for (int64_t i = 0; i < here; ++i) {
    const uint8_t* row = w.data + size_t(r0 + i) * w.row_bytes;
    for (int c = 0; c < 4; ++c) {  // chunk c, row i: columns 8c+j low, 8c+4+j high
      const uint32_t v = code_word(w, row, 4 * b + c);
      const uint32_t o = spread_nibbles(v) | spread_nibbles(v >> 16) << 4;
      std::memcpy(out + 64 * c + 4 * i, &o, 4);
    }
  }
}

// Row group g of w into out (group_bytes(w) bytes).
void pack_group(const WeightView& w, int64_t g, uint8_t* out) {
  const int64_t r0 = g * kGroupRows, here = std::min(kGroupRows, w.rows - r0);
  const size_t pb = param_bytes(w);
  // the 16 rows' parameter at byte offset `at` of each row's parameters (row stride `stride` from base)
  auto params = [&](const uint8_t* base, size_t stride, size_t at) {
    for (int64_t i = 0; i < kGroupRows; ++i) {
      if (i < here) std::memcpy(out + i * pb, base + size_t(r0 + i) * stride + at, pb);
      else std::memset(out + i * pb, 0, pb);
    }
    out += kGroupRows * pb;
  };
  auto block = [&](int64_t b) {
    pack_block(w, r0, here, b, out);
    out += kBlockCodes;
  };
  if (w.format == WeightFormat::Q4_0) {
    for (int64_t b = 0; b < w.cols / 32; ++b) {
      params(w.data, w.row_bytes, size_t(18 * b));
      block(b);
    }
    return;
  }
  const int64_t groups = w.cols / w.group_size, per = w.group_size / 32;
  for (int64_t gi = 0; gi < groups; ++gi) {
    params(w.scales, size_t(groups) * pb, size_t(gi) * pb);
    params(w.biases, size_t(groups) * pb, size_t(gi) * pb);
    for (int64_t j = 0; j < per; ++j) block(gi * per + j);
  }
}

// x quantized for the kernel, block-major so that a tile's rows of x lie side by side: per block b and row i of
// x, its 32 int8 at q[(b·n + i)·32], dx and (Q4_0) -8·xs at [b·n + i]; per weight group g (MLX) Σx at [g·n + i].
struct PackedActs {
  int64_t n = 0, nb = 0, groups = 0;
  std::vector<int8_t> q;
  std::vector<float> dx, off, xsg;
};

// Sizes a for n rows of x (cols each).
void packed_acts_size(int64_t n, int64_t cols, bool q40, int64_t group_size, PackedActs& a) {
  a.n = n, a.nb = cols / 32, a.groups = q40 ? 0 : cols / group_size;
  a.q.resize(size_t(n * cols));
  a.dx.resize(size_t(n * a.nb));
  a.off.resize(size_t(n * a.nb));
  a.xsg.resize(size_t(n * a.groups));
}

// Rows [i0, i1) of x (cols each) into a.
void packed_acts_rows(const float* x, int64_t i0, int64_t i1, int64_t cols, bool q40, int64_t group_size, PackedActs& a) {
  const int64_t n = a.n;
  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t b = 0; b < a.nb; ++b) {
      const size_t at = size_t(b * n + i);
      quantize_block32(x + i * cols + 32 * b, a.q.data() + 32 * at, &a.dx[at], &a.off[at]);
    }
    if (q40) {
      for (int64_t b = 0; b < a.nb; ++b) a.off[size_t(b * n + i)] *= -8.0f;
      continue;
    }
    const int64_t per = group_size / 32;
    for (int64_t g = 0; g < a.groups; ++g) {
      float s = 0.0f;
      for (int64_t j = 0; j < per; ++j) s += a.off[size_t((g * per + j) * n + i)];
      a.xsg[size_t(g * n + i)] = s;
    }
  }
}

struct GroupDesc {
  int64_t nb, groups, per;  // blocks, weight groups (MLX), blocks per weight group
  DType pdt;
  size_t pb;
};

OPTIQ_PACKED512 OPTIQ_PINLINE __m512 load_params16(const uint8_t* p, DType dt) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if (dt == DType::F16) return _mm512_cvtph_ps(h);
  if (dt == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

// 4 int8 of x as one int32, read in place (broadcast from memory, not through a general register).
typedef int32_t unaligned_i32 __attribute__((may_alias, aligned(1)));

// The exact integer dots of a block's codes (16 rows, at p) with NX rows of x's 32 int8 (row i at xq + 32i),
// after asking for the bytes kPackedPf ahead. The chunks are unpacked one at a time and each feeds the NX
// chains in turn, so NX independent vpdpbusd chains run interleaved.
template <int NX>
OPTIQ_PACKED512 OPTIQ_PINLINE void block_dots(const uint8_t* p, const int8_t* xq, __m512i* dot) {
#pragma GCC unroll 5
  for (int i = 0; i < 5; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + kPackedPf + 64 * i), _MM_HINT_T0);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 8
  for (int i = 0; i < NX; ++i) dot[i] = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512i v = _mm512_loadu_si512(p + 64 * c);
    const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i)
      dot[i] = _mm512_dpbusd_epi32(dot[i], lo, _mm512_set1_epi32(*reinterpret_cast<const unaligned_i32*>(xq + 32 * i + 8 * c)));
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i)
      dot[i] = _mm512_dpbusd_epi32(dot[i], hi, _mm512_set1_epi32(*reinterpret_cast<const unaligned_i32*>(xq + 32 * i + 8 * c + 4)));
  }
}

// One row group (its bytes at p) times NX rows of x from x0; row i of x's 16 outputs to y + i·y_stride, the
// lanes of mask only.
template <bool Q40, int NX>
OPTIQ_PACKED512 void group_tile(const uint8_t* p, const GroupDesc& d, const PackedActs& a, int64_t x0, float* y,
                                int64_t y_stride, __mmask16 mask) {
  __m512 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = _mm512_setzero_ps();
  const int64_t n = a.n;
  const int8_t* xq = a.q.data() + 32 * x0;  // this block's, row i at xq + 32i
  const float* dx = a.dx.data() + x0;
  const float* off = a.off.data() + x0;
  __m512i dot[NX];
  if constexpr (Q40) {
    for (int64_t b = 0; b < d.nb; ++b, p += 32 + kBlockCodes, xq += 32 * n, dx += n, off += n) {
      const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      block_dots<NX>(p + 32, xq, dot);
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) {
        const __m512 f = _mm512_cvtepi32_ps(dot[i]);
        acc[i] = _mm512_fmadd_ps(_mm512_fmadd_ps(f, _mm512_set1_ps(dx[i]), _mm512_set1_ps(off[i])), s, acc[i]);
      }
    }
  } else {
    const float* xsg = a.xsg.data() + x0;  // (empty for Q4_0)
    for (int64_t g = 0; g < d.groups; ++g, xsg += n) {
      const __m512 s = load_params16(p, d.pdt), bias = load_params16(p + kGroupRows * d.pb, d.pdt);
      p += 2 * kGroupRows * d.pb;
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) acc[i] = _mm512_fmadd_ps(bias, _mm512_set1_ps(xsg[i]), acc[i]);
      for (int64_t j = 0; j < d.per; ++j, p += kBlockCodes, xq += 32 * n, dx += n) {
        block_dots<NX>(p, xq, dot);
#pragma GCC unroll 8
        for (int i = 0; i < NX; ++i) {
          const __m512 f = _mm512_cvtepi32_ps(dot[i]);
          acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(f, _mm512_set1_ps(dx[i])), s, acc[i]);
        }
      }
    }
  }
  for (int i = 0; i < NX; ++i) _mm512_mask_storeu_ps(y + i * y_stride, mask, acc[i]);
}

// ---- AVX2 (no VNNI) ----
// The same layout and the same arithmetic: a 64-byte chunk is two 256-bit halves (rows 0-7, rows 8-15), and
// maddubs (u8 · s8 pairs into int16) with madd by ones (pairs into int32) gives each row its exact integer dot.
// A block's 8 maddubs results of a half are first summed in int16: no sum can overflow (8 · 2 · 15 · 128 =
// 30720 < 32768), so the dots are the VNNI kernel's integers, and every lane runs that kernel's float
// operations: the results are bit for bit the same.
#define OPTIQ_PACKED256 __attribute__((target("avx2,fma,f16c")))

// The integer dots of a block's codes (16 rows, at p) with NX rows of x: dot[2i] rows 0-7, dot[2i+1] rows 8-15.
template <int NX>
OPTIQ_PACKED256 OPTIQ_PINLINE void block_dots256(const uint8_t* p, const int8_t* xq, __m256i* dot) {
#pragma GCC unroll 5
  for (int i = 0; i < 5; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + kPackedPf + 64 * i), _MM_HINT_T0);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256i s[2 * NX];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * c));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * c + 32));
    const __m256i lo0 = _mm256_and_si256(v0, m4), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
    const __m256i lo1 = _mm256_and_si256(v1, m4), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i) {
      const __m256i xl = _mm256_set1_epi32(*reinterpret_cast<const unaligned_i32*>(xq + 32 * i + 8 * c));
      const __m256i xh = _mm256_set1_epi32(*reinterpret_cast<const unaligned_i32*>(xq + 32 * i + 8 * c + 4));
      const __m256i a0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, xl), _mm256_maddubs_epi16(hi0, xh));
      const __m256i a1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo1, xl), _mm256_maddubs_epi16(hi1, xh));
      s[2 * i] = c ? _mm256_add_epi16(s[2 * i], a0) : a0;
      s[2 * i + 1] = c ? _mm256_add_epi16(s[2 * i + 1], a1) : a1;
      // (gcc otherwise reorders the integer sums into a tree with every product spilled to the stack first)
      __asm__("" : "+x"(s[2 * i]), "+x"(s[2 * i + 1]));
    }
  }
  const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 16
  for (int j = 0; j < 2 * NX; ++j) dot[j] = _mm256_madd_epi16(s[j], ones);
}

// group_tile in 256-bit vectors: acc[2i + h] holds row i of x's outputs of rows 8h..8h+7 of the group.
template <bool Q40, int NX>
OPTIQ_PACKED256 void group_tile256(const uint8_t* p, const GroupDesc& d, const PackedActs& a, int64_t x0, float* y,
                                   int64_t y_stride, int64_t left) {
  __m256 acc[2 * NX];
  for (int j = 0; j < 2 * NX; ++j) acc[j] = _mm256_setzero_ps();
  const int64_t n = a.n;
  const int8_t* xq = a.q.data() + 32 * x0;
  const float* dx = a.dx.data() + x0;
  const float* off = a.off.data() + x0;
  __m256i dot[2 * NX];
  if constexpr (Q40) {
    for (int64_t b = 0; b < d.nb; ++b, p += 32 + kBlockCodes, xq += 32 * n, dx += n, off += n) {
      const __m256 s0 = load_params8(p, DType::F16), s1 = load_params8(p + 16, DType::F16);
      block_dots256<NX>(p + 32, xq, dot);
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) {
        const __m256 dxv = _mm256_set1_ps(dx[i]), ov = _mm256_set1_ps(off[i]);
        acc[2 * i] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[2 * i]), dxv, ov), s0, acc[2 * i]);
        acc[2 * i + 1] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[2 * i + 1]), dxv, ov), s1, acc[2 * i + 1]);
      }
    }
  } else {
    const float* xsg = a.xsg.data() + x0;
    for (int64_t g = 0; g < d.groups; ++g, xsg += n) {
      const __m256 s0 = load_params8(p, d.pdt), s1 = load_params8(p + 8 * d.pb, d.pdt);
      const __m256 b0 = load_params8(p + kGroupRows * d.pb, d.pdt), b1 = load_params8(p + (kGroupRows + 8) * d.pb, d.pdt);
      p += 2 * kGroupRows * d.pb;
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) {
        const __m256 xs = _mm256_set1_ps(xsg[i]);
        acc[2 * i] = _mm256_fmadd_ps(b0, xs, acc[2 * i]);
        acc[2 * i + 1] = _mm256_fmadd_ps(b1, xs, acc[2 * i + 1]);
      }
      for (int64_t j = 0; j < d.per; ++j, p += kBlockCodes, xq += 32 * n, dx += n) {
        block_dots256<NX>(p, xq, dot);
#pragma GCC unroll 8
        for (int i = 0; i < NX; ++i) {
          const __m256 dxv = _mm256_set1_ps(dx[i]);
          acc[2 * i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot[2 * i]), dxv), s0, acc[2 * i]);
          acc[2 * i + 1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot[2 * i + 1]), dxv), s1, acc[2 * i + 1]);
        }
      }
    }
  }
  for (int i = 0; i < NX; ++i) {
    float* yi = y + i * y_stride;
    if (left >= kGroupRows) {
      _mm256_storeu_ps(yi, acc[2 * i]);
      _mm256_storeu_ps(yi + 8, acc[2 * i + 1]);
    } else {  // the matrix's last, partial row group
      alignas(32) float t[kGroupRows];
      _mm256_store_ps(t, acc[2 * i]);
      _mm256_store_ps(t + 8, acc[2 * i + 1]);
      std::memcpy(yi, t, size_t(left) * sizeof(float));
    }
  }
}

// Row groups [g0, g1) of w times all rows of x, into y [a.n][w.rows]: the AVX2 tiles.
template <bool Q40>
OPTIQ_PACKED256 void run_groups256(const WeightView& w, const GroupDesc& d, const PackedActs& a, int64_t g0, int64_t g1,
                                   float* y) {
  const size_t gb = group_bytes(w);
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* p = w.packed + size_t(g) * gb;
    const int64_t r = g * kGroupRows, left = w.rows - r;
    float* yr = y + r;
    int64_t x0 = 0;
    for (; x0 + kTile256 <= a.n; x0 += kTile256) group_tile256<Q40, kTile256>(p, d, a, x0, yr + x0 * w.rows, w.rows, left);
    if (a.n - x0 >= 3) group_tile256<Q40, 3>(p, d, a, x0, yr + x0 * w.rows, w.rows, left), x0 += 3;
    if (a.n - x0 >= 2) group_tile256<Q40, 2>(p, d, a, x0, yr + x0 * w.rows, w.rows, left), x0 += 2;
    if (a.n - x0 >= 1) group_tile256<Q40, 1>(p, d, a, x0, yr + x0 * w.rows, w.rows, left);
  }
}

// Row groups [g0, g1) of w times all rows of x, into y [a.n][w.rows].
template <bool Q40>
void run_groups(const WeightView& w, const GroupDesc& d, const PackedActs& a, int64_t g0, int64_t g1, float* y) {
  if (!vnni_active()) return run_groups256<Q40>(w, d, a, g0, g1, y);
  const size_t gb = group_bytes(w);
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* p = w.packed + size_t(g) * gb;
    const int64_t r = g * kGroupRows, left = w.rows - r;
    const __mmask16 mask = left >= kGroupRows ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    float* yr = y + r;
    int64_t x0 = 0;
    for (; x0 + 8 <= a.n; x0 += 8) group_tile<Q40, 8>(p, d, a, x0, yr + x0 * w.rows, w.rows, mask);
    if (a.n - x0 >= 4) group_tile<Q40, 4>(p, d, a, x0, yr + x0 * w.rows, w.rows, mask), x0 += 4;
    if (a.n - x0 >= 2) group_tile<Q40, 2>(p, d, a, x0, yr + x0 * w.rows, w.rows, mask), x0 += 2;
    if (a.n - x0 >= 1) group_tile<Q40, 1>(p, d, a, x0, yr + x0 * w.rows, w.rows, mask);
  }
}

}  // namespace

bool packed_active(const WeightView& w) { return w.packed && active_isa() == Isa::Avx2; }

bool qmatmul_packed(const WeightView* ws, float* const* ys, int count, const float* x, int64_t n, const LowRankRun* lr,
                    const RowPrep* prep) {
  if (count <= 0 || n <= 0) return false;
  const WeightView& w0 = ws[0];
  double macs = 0;
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    const WeightView& w = ws[i];
    if (!packed_active(w) || w.format != w0.format || w.cols != w0.cols || w.group_size != w0.group_size ||
        w.scale_dtype != w0.scale_dtype)
      return false;
    // Several weights share the threads' row ranges, split in whole row groups: each must fill its last one.
    if (count > 1 && w.rows % kGroupRows) return false;
    macs += double(w.rows) * double(w.cols) * double(n);
    total += w.rows;
  }
  const bool q40 = w0.format == WeightFormat::Q4_0;
  const int threads = threads_for(macs);
  thread_local PackedActs acts;
  PackedActs& a = acts;  // the caller's, also inside the parallel region
  packed_acts_size(n, w0.cols, q40, w0.group_size, a);
  const GroupDesc d{a.nb, a.groups, q40 ? 1 : w0.group_size / 32, q40 ? DType::F16 : w0.scale_dtype, param_bytes(w0)};
  decode_rows(total, kGroupRows, threads, [&](int64_t g0, int64_t g1) {
    int64_t off = 0;
    for (int i = 0; i < count; off += ws[i].rows, ++i) {
      const int64_t r0 = std::max(g0, off) - off, r1 = std::min(g1, off + ws[i].rows) - off;
      if (r0 >= r1) continue;
      const int64_t first = r0 / kGroupRows, last = (r1 + kGroupRows - 1) / kGroupRows;
      if (q40) run_groups<true>(ws[i], d, a, first, last, ys[i]);
      else run_groups<false>(ws[i], d, a, first, last, ys[i]);
    }
  }, lr, [&](int ti, int nt) {  // x made and quantized in the same region, each thread its share of the rows
    const auto [i0, i1] = thread_share(n, 1, ti, nt);
    if (prep && i0 < i1) (*prep)(i0, i1);
    packed_acts_rows(x, i0, i1, w0.cols, q40, w0.group_size, a);
  });
  return true;
}

}  // namespace detail

size_t packed_bytes(const WeightView& w) {
  static const bool off = [] {
    const char* e = std::getenv("OPTIQ_PACK");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (off || active_isa() != Isa::Avx2 || !detail::packable(w)) return 0;
  detail::check_view(w);
  return size_t((w.rows + detail::kGroupRows - 1) / detail::kGroupRows) * detail::group_bytes(w);
}

void pack_weight(WeightView& w, uint8_t* dst) {
  const size_t bytes = packed_bytes(w);
  OPTIQ_CHECK(bytes > 0 && reinterpret_cast<uintptr_t>(dst) % 64 == 0, "pack_weight: a matrix the packed kernel does not take");
  const size_t gb = detail::group_bytes(w);
  const int64_t groups = int64_t(bytes / gb);
  // On the caller's thread alone (model loading packs several at once on plain threads): an OpenMP team
  // started on a loading thread stays beside the one the engine's thread starts later, and the two made one
  // decode stream in the server twice as slow.
  for (int64_t g = 0; g < groups; ++g) detail::pack_group(w, g, dst + size_t(g) * gb);
  w.packed = dst;
}

std::shared_ptr<const LargeBuffer> pack_weight(WeightView& w) {
  const size_t n = packed_bytes(w);
  if (n == 0) return nullptr;
  auto buf = std::make_shared<LargeBuffer>(n);
  pack_weight(w, buf->data());
  return buf;
}

}  // namespace optiq::kernels
