#include "quant/ggml_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/half.h"

namespace optiq::quant {

void q4_k_scale_min(const uint8_t* s, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = uint8_t((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *m = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[b * 32 + j] = d * float((x[b].qs[j] & 0xF) - 8);
      y[b * 32 + j + 16] = d * float((x[b].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    const float d = f16_to_f32(x[b].d);
    const float m = f16_to_f32(x[b].m);
    for (int j = 0; j < 16; ++j) {
      y[b * 32 + j] = d * float(x[b].qs[j] & 0xF) + m;
      y[b * 32 + j + 16] = d * float(x[b].qs[j] >> 4) + m;
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[b * 32 + j] = d * float(x[b].qs[j]);
  }
}

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_to_f32(x[b].d);
    const float dmin = f16_to_f32(x[b].dmin);
    float* out = y + b * kQK_K;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      q4_k_scale_min(x[b].scales, 2 * c, &sc0, &m0);
      q4_k_scale_min(x[b].scales, 2 * c + 1, &sc1, &m1);
      const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
      const uint8_t* q = x[b].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        out[64 * c + l] = d0 * float(q[l] & 0xF) - mm0;
        out[64 * c + 32 + l] = d1 * float(q[l] >> 4) - mm1;
      }
    }
  }
}

void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      const int8_t* sc = x[b].scales + 8 * h;
      float* out = y + b * kQK_K + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = d * float(sc[is]) * float(q1);
        out[l + 32] = d * float(sc[is + 2]) * float(q2);
        out[l + 64] = d * float(sc[is + 4]) * float(q3);
        out[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
  OPTIQ_CHECK(n % kQK4_0 == 0, "n must be a multiple of 32");
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float* v = x + b * 32;
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(v[j]) > amax) {
        amax = std::fabs(v[j]);
        mx = v[j];
      }
    }
    const float d = mx / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 16; ++j) {
      const uint8_t q0 = uint8_t(std::min<int>(15, int8_t(v[j] * id + 8.5f)));
      const uint8_t q1 = uint8_t(std::min<int>(15, int8_t(v[j + 16] * id + 8.5f)));
      y[b].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n) {
  OPTIQ_CHECK(n % kQK4_1 == 0, "n must be a multiple of 32");
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    const float* v = x + b * 32;
    float mn = v[0], mx = v[0];
    for (int j = 1; j < 32; ++j) {
      mn = std::min(mn, v[j]);
      mx = std::max(mx, v[j]);
    }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    y[b].m = f32_to_f16(mn);
    for (int j = 0; j < 16; ++j) {
      const uint8_t q0 = uint8_t(std::min<int>(15, int8_t((v[j] - mn) * id + 0.5f)));
      const uint8_t q1 = uint8_t(std::min<int>(15, int8_t((v[j + 16] - mn) * id + 0.5f)));
      y[b].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  OPTIQ_CHECK(n % kQK8_0 == 0, "n must be a multiple of 32");
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float* v = x + b * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 32; ++j) y[b].qs[j] = int8_t(std::round(v[j] * id));
  }
}

namespace {
int nearest_int(float f) { return int(std::lround(f)); }
}  // namespace

void quantize_row_q4_k(const float* x, BlockQ4_K* y, int64_t n) {
  OPTIQ_CHECK(n % kQK_K == 0, "n must be a multiple of 256");
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* v = x + b * kQK_K;
    float sub_scale[8], sub_min[8];  // w ~= sub_scale*q - sub_min, sub_min >= 0
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
      float mn = 0.0f, mx = v[32 * j];
      for (int l = 0; l < 32; ++l) {
        mn = std::min(mn, v[32 * j + l]);
        mx = std::max(mx, v[32 * j + l]);
      }
      sub_scale[j] = (mx - mn) / 15.0f;
      sub_min[j] = -mn;
      max_scale = std::max(max_scale, sub_scale[j]);
      max_min = std::max(max_min, sub_min[j]);
    }
    const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    y[b].d = f32_to_f16(d);
    y[b].dmin = f32_to_f16(dmin);
    const float dq = f16_to_f32(y[b].d), dminq = f16_to_f32(y[b].dmin);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = uint8_t(std::clamp(dq > 0 ? nearest_int(sub_scale[j] / dq) : 0, 0, 63));
      m[j] = uint8_t(std::clamp(dminq > 0 ? nearest_int(sub_min[j] / dminq) : 0, 0, 63));
    }
    for (int j = 0; j < 4; ++j) {
      y[b].scales[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
      y[b].scales[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
      y[b].scales[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
    for (int c = 0; c < 4; ++c) {
      uint8_t q[2][32];
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        const float ds = dq * sc[j], dm = dminq * m[j];
        for (int l = 0; l < 32; ++l) {
          const int qi = ds > 0 ? nearest_int((v[32 * j + l] + dm) / ds) : 0;
          q[h][l] = uint8_t(std::clamp(qi, 0, 15));
        }
      }
      for (int l = 0; l < 32; ++l) y[b].qs[32 * c + l] = uint8_t(q[0][l] | (q[1][l] << 4));
    }
  }
}

void quantize_row_q6_k(const float* x, BlockQ6_K* y, int64_t n) {
  OPTIQ_CHECK(n % kQK_K == 0, "n must be a multiple of 256");
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* v = x + b * kQK_K;
    float sub_scale[16];  // signed, so that the largest-magnitude value maps to q = -32
    float max_abs = 0.0f;
    for (int j = 0; j < 16; ++j) {
      float amax = 0.0f, mx = 0.0f;
      for (int l = 0; l < 16; ++l) {
        if (std::fabs(v[16 * j + l]) > amax) {
          amax = std::fabs(v[16 * j + l]);
          mx = v[16 * j + l];
        }
      }
      sub_scale[j] = mx / -32.0f;
      max_abs = std::max(max_abs, std::fabs(sub_scale[j]));
    }
    const float d = max_abs / 127.0f;
    y[b].d = f32_to_f16(d);
    const float dq = f16_to_f32(y[b].d);
    uint8_t q[256];
    for (int j = 0; j < 16; ++j) {
      const int s = dq > 0 ? std::clamp(nearest_int(sub_scale[j] / dq), -128, 127) : 0;
      y[b].scales[j] = int8_t(s);
      const float ds = dq * float(s);
      for (int l = 0; l < 16; ++l) {
        const int qi = ds != 0.0f ? nearest_int(v[16 * j + l] / ds) : 0;
        q[16 * j + l] = uint8_t(std::clamp(qi, -32, 31) + 32);
      }
    }
    std::memset(y[b].qh, 0, sizeof(y[b].qh));
    for (int h = 0; h < 2; ++h) {
      uint8_t* ql = y[b].ql + 64 * h;
      uint8_t* qh = y[b].qh + 32 * h;
      const uint8_t* qq = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = uint8_t((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
        ql[l + 32] = uint8_t((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
        qh[l] = uint8_t((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                        ((qq[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace optiq::quant
