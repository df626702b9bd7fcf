// Matmul timing: weight GB/s at n=1 (decode) and GFLOP/s at n=2-16 (batched decode) and n=128/512
// (prefill) per format and shape.
// Usage: matmul_bench [--quick] [--ref] [--n1] [--fmt name,name] [--shape rows cols] [--avx512-ab | --pack-ab]
//   --quick: skip the 151936x1024 shape; --ref: also time matmul_ref at n=1; --n1: decode only
//   --avx512-ab: on a CPU with AVX-512, each timed call alternates between the AVX-512 (and VNNI) variants
//   and the AVX2 code, and the batched rows print both and the median of the paired ratios
//   --pack-ab: likewise between the weight repacked for the packed 4-bit kernel (pack_weight, as a model loads
//   it) and the weight as stored (the pair kernels); without it the packed weight is timed where it exists
//   --stream: repacked 4-bit weights only, streamed from memory as in decode: enough packed copies of each
//   weight to pass 600 MB (more than a server CPU's L3) are multiplied in turn, at n=1 and n=8; prints each
//   one's GB/s and how much longer the n=8 pass takes (1.0 = the 8 rows cost nothing over the bytes)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "quant/ggml_blocks.h"
#include "quant/mlx_affine.h"
#include "util/cpu.h"
#include "util/half.h"

using namespace optiq;
using namespace optiq::kernels;

namespace {

struct Owned {
  std::vector<uint8_t> data, scales, biases;
  std::shared_ptr<const LargeBuffer> packed;
  WeightView v;
  size_t bytes() const { return data.size() + scales.size() + biases.size(); }
};

uint32_t g_state = 12345;
float rnd() {  // xorshift, ~uniform(-1, 1)
  g_state ^= g_state << 13;
  g_state ^= g_state >> 17;
  g_state ^= g_state << 5;
  return float(int32_t(g_state)) * (1.0f / 2147483648.0f);
}

Owned make(WeightFormat f, int64_t rows, int64_t cols, int bits = 4, int gs = 64) {
  Owned o;
  WeightView& v = o.v;
  v.format = f;
  v.rows = rows;
  v.cols = cols;
  std::vector<float> w(static_cast<size_t>(cols));
  std::vector<float> s(static_cast<size_t>(cols / 32 + 1)), b(s.size());
  switch (f) {
    case WeightFormat::BF16: v.row_bytes = size_t(cols) * 2; break;
    case WeightFormat::MlxAffine: v.row_bytes = quant::mlx_packed_bytes(cols, bits); break;
    case WeightFormat::Q4_0: v.row_bytes = size_t(cols / 32) * 18; break;
    case WeightFormat::Q8_0: v.row_bytes = size_t(cols / 32) * 34; break;
    case WeightFormat::Q4_K: v.row_bytes = size_t(cols / 256) * 144; break;
    case WeightFormat::Q6_K: v.row_bytes = size_t(cols / 256) * 210; break;
    default: v.row_bytes = size_t(cols) * 4; break;
  }
  o.data.resize(v.row_bytes * size_t(rows));
  if (f == WeightFormat::MlxAffine) {
    v.bits = bits;
    v.group_size = gs;
    v.scale_dtype = DType::BF16;
    o.scales.resize(size_t(rows * cols / gs) * 2);
    o.biases.resize(o.scales.size());
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& x : w) x = rnd() * 0.05f;
    uint8_t* out = o.data.data() + size_t(r) * v.row_bytes;
    switch (f) {
      case WeightFormat::BF16:
        for (int64_t i = 0; i < cols; ++i) {
          uint16_t h = f32_to_bf16(w[size_t(i)]);
          std::memcpy(out + 2 * i, &h, 2);
        }
        break;
      case WeightFormat::MlxAffine: {
        const int64_t g = cols / gs;
        quant::quantize_row(w.data(), cols, bits, gs, out, s.data(), b.data());
        quant::store_params(s.data(), g, DType::BF16, o.scales.data() + size_t(r * g) * 2);
        quant::store_params(b.data(), g, DType::BF16, o.biases.data() + size_t(r * g) * 2);
        break;
      }
      case WeightFormat::Q4_0: quant::quantize_row_q4_0(w.data(), (quant::BlockQ4_0*)out, cols); break;
      case WeightFormat::Q8_0: quant::quantize_row_q8_0(w.data(), (quant::BlockQ8_0*)out, cols); break;
      case WeightFormat::Q4_K: quant::quantize_row_q4_k(w.data(), (quant::BlockQ4_K*)out, cols); break;
      case WeightFormat::Q6_K: quant::quantize_row_q6_k(w.data(), (quant::BlockQ6_K*)out, cols); break;
      default: std::memcpy(out, w.data(), size_t(cols) * 4); break;
    }
  }
  v.data = o.data.data();
  v.scales = o.scales.empty() ? nullptr : o.scales.data();
  v.biases = o.biases.empty() ? nullptr : o.biases.data();
  o.packed = pack_weight(v);
  return o;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median-of-runs seconds per call.
template <class F>
double time_it(F&& f, double min_total) {
  f();  // warm
  std::vector<double> t;
  const double start = now();
  while (t.size() < 3 || (now() - start < min_total && t.size() < 200)) {
    const double a = now();
    f();
    t.push_back(now() - a);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Calls alternate with a variant on and off (set(true), set(false)): median seconds of each, and the median of
// the pairs' off/on ratios.
struct Ab { double on, off, ratio; };
template <class F, class S>
Ab time_ab(F&& f, S&& set, double min_total) {
  f();
  std::vector<double> on, off, ratio;
  const double start = now();
  while (on.size() < 5 || (now() - start < min_total && on.size() < 200)) {
    set(true);
    double a = now();
    f();
    on.push_back(now() - a);
    set(false);
    a = now();
    f();
    off.push_back(now() - a);
    ratio.push_back(off.back() / on.back());
  }
  set(true);
  auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
  return {med(on), med(off), med(ratio)};
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, with_ref = false, n1_only = false, ab = false, pack_ab = false, stream = false;
  long long extra_rows = 0, extra_cols = 0;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--ref")) with_ref = true;
    if (!std::strcmp(argv[i], "--n1")) n1_only = true;
    if (!std::strcmp(argv[i], "--avx512-ab")) ab = true;
    if (!std::strcmp(argv[i], "--pack-ab")) pack_ab = true;
    if (!std::strcmp(argv[i], "--stream")) stream = true, quick = true;
    if (!std::strcmp(argv[i], "--fmt") && i + 1 < argc) only = argv[++i];
    if (!std::strcmp(argv[i], "--shape") && i + 2 < argc) {  // only this shape
      extra_rows = std::atoll(argv[++i]);
      extra_cols = std::atoll(argv[++i]);
    }
  }
  std::printf("isa=%s threads=%d\n", isa_name(active_isa()), compute_threads());
  struct Shape { int64_t rows, cols; };
  std::vector<Shape> shapes = {{3072, 1024}, {1024, 3072}, {151936, 1024}};
  if (quick) shapes.pop_back();
  if (extra_rows > 0) shapes = {{extra_rows, extra_cols}};
  struct Fmt { const char* name; WeightFormat f; int bits; };
  const Fmt fmts[] = {{"mlx4g64", WeightFormat::MlxAffine, 4}, {"q4_0", WeightFormat::Q4_0, 0},
                      {"q8_0", WeightFormat::Q8_0, 0},        {"bf16", WeightFormat::BF16, 0},
                      {"mlx8g64", WeightFormat::MlxAffine, 8}, {"mlx6g64", WeightFormat::MlxAffine, 6},
                      {"mlx3g64", WeightFormat::MlxAffine, 3}, {"q4_k", WeightFormat::Q4_K, 0},
                      {"q6_k", WeightFormat::Q6_K, 0}};
  for (const Shape& sh : shapes) {
    const bool big = sh.rows > 100000;
    std::vector<float> x(static_cast<size_t>(512 * sh.cols));
    for (auto& v : x) v = rnd();
    std::vector<float> y(static_cast<size_t>(512 * sh.rows));
    for (const Fmt& f : fmts) {
      if (!only.empty() && only.find(f.name) == std::string::npos) continue;
      if (big && f.f != WeightFormat::MlxAffine && f.f != WeightFormat::Q4_0 &&
          f.f != WeightFormat::Q8_0 && f.f != WeightFormat::BF16)
        continue;
      if (big && f.f == WeightFormat::MlxAffine && f.bits != 4) continue;
      Owned o = make(f.f, sh.rows, sh.cols, f.bits ? f.bits : 4, 64);
      const double gb = double(o.bytes()) / 1e9;
      if (stream) {
        if (!o.packed) continue;
        std::vector<std::shared_ptr<const LargeBuffer>> copies;
        std::vector<WeightView> views;
        size_t total = 0;
        while (total < size_t(600) << 20) {
          WeightView v = o.v;
          copies.push_back(pack_weight(v));
          views.push_back(v);
          total += copies.back()->size();
        }
        double t[2];
        for (int k = 0; k < 2; ++k) {
          const int64_t n = k == 0 ? 1 : 8;
          t[k] = time_it([&] { for (const WeightView& v : views) matmul(v, x.data(), n, y.data()); }, 3.0);
        }
        std::printf("%-8s %6lldx%-5lld x%zu copies, %.0f MB packed: n=1 %6.2f GB/s  n=8 %6.2f GB/s  n=8 pass / n=1 pass %.2f\n",
                    f.name, (long long)sh.rows, (long long)sh.cols, views.size(), double(total) / 1e6, double(total) / 1e9 / t[0],
                    double(total) / 1e9 / t[1], t[1] / t[0]);
        continue;
      }
      // The A/B variant: AVX-512 on/off, or the packed weight / the weight as stored.
      const WeightView stored = [&] { WeightView v = o.v; v.packed = nullptr; return v; }();
      const WeightView* cur = &o.v;
      const bool do_ab = (ab && avx512_detected()) || (pack_ab && o.packed);
      const char* on_name = ab ? "avx512" : "packed";
      const char* off_name = ab ? "avx2" : "stored";
      auto set = [&](bool on) {
        if (ab) set_avx512_active(on);
        else cur = on ? &o.v : &stored;
      };
      if (do_ab && !big) {
        const Ab r = time_ab([&] { matmul(*cur, x.data(), 1, y.data()); }, set, 2.0);
        std::printf("%-8s %6lldx%-5lld n=1   %s %6.2f GB/s  %s %6.2f GB/s  %s faster %.3fx (median of pairs)\n",
                    f.name, (long long)sh.rows, (long long)sh.cols, on_name, gb / r.on, off_name, gb / r.off, on_name,
                    r.ratio);
      }
      const double t1 = time_it([&] { matmul(o.v, x.data(), 1, y.data()); }, 1.0);
      std::printf("%-8s %6lldx%-5lld n=1   %8.3f ms  %6.2f GB/s", f.name, (long long)sh.rows,
                  (long long)sh.cols, t1 * 1e3, gb / t1);
      if (with_ref) {
        const double tr = time_it([&] { matmul_ref(o.v, x.data(), 1, y.data()); }, 0.5);
        std::printf("   (ref %6.2f GB/s)", gb / tr);
      }
      if (big) {  // plain streaming read of the same bytes, for reference
        const double tr = time_it([&] {
          const uint64_t* p = reinterpret_cast<const uint64_t*>(o.data.data());
          const int64_t words = int64_t(o.data.size() / 8);
          uint64_t acc = 0;
#pragma omp parallel for reduction(^ : acc) num_threads(compute_threads())
          for (int64_t i = 0; i < words; i += 8) acc ^= p[i] + p[i + 1] + p[i + 2] + p[i + 3] +
                                                       p[i + 4] + p[i + 5] + p[i + 6] + p[i + 7];
          if (acc == 42) std::printf(" ");
        }, 0.5);
        std::printf("   (plain read %6.2f GB/s)", double(o.data.size()) / 1e9 / tr);
      }
      std::printf("\n");
      if (big || n1_only) continue;
      for (int64_t n : {int64_t(2), int64_t(4), int64_t(8), int64_t(16), int64_t(128), int64_t(512)}) {
        const double gflop = 2.0 * double(sh.rows) * double(sh.cols) * double(n) / 1e9;
        if (do_ab) {
          const Ab r = time_ab([&] { matmul(*cur, x.data(), n, y.data()); }, set, quick ? 1.0 : 3.0);
          std::printf("%-8s %6lldx%-5lld n=%-3lld %s %6.1f GFLOP/s  %s %6.1f GFLOP/s  %s faster %.3fx (median of pairs)\n",
                      f.name, (long long)sh.rows, (long long)sh.cols, (long long)n, on_name, gflop / r.on, off_name,
                      gflop / r.off, on_name, r.ratio);
          continue;
        }
        const double t = time_it([&] { matmul(o.v, x.data(), n, y.data()); }, quick ? 0.5 : 1.5);
        std::printf("%-8s %6lldx%-5lld n=%-3lld %8.3f ms  %6.1f GFLOP/s\n", f.name, (long long)sh.rows,
                    (long long)sh.cols, (long long)n, t * 1e3, gflop / t);
      }
    }
  }
  return 0;
}
