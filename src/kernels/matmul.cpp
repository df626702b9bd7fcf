#include "kernels/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/matmul_internal.h"
#include "quant/ggml_blocks.h"
#include "quant/mlx_affine.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::kernels {

namespace detail {

int64_t format_block_elems(const WeightView& w) {
  switch (w.format) {
    case WeightFormat::F32:
    case WeightFormat::F16:
    case WeightFormat::BF16: return 1;
    case WeightFormat::MlxAffine: return w.group_size;
    case WeightFormat::Q4_0:
    case WeightFormat::Q4_1:
    case WeightFormat::Q8_0: return 32;
    case WeightFormat::Q4_K:
    case WeightFormat::Q6_K: return 256;
  }
  return 1;
}

size_t format_min_row_bytes(const WeightView& w) {
  const int64_t c = w.cols;
  switch (w.format) {
    case WeightFormat::F32: return size_t(c) * 4;
    case WeightFormat::F16:
    case WeightFormat::BF16: return size_t(c) * 2;
    case WeightFormat::MlxAffine: return quant::mlx_packed_bytes(c, w.bits);
    case WeightFormat::Q4_0: return size_t(c / 32) * sizeof(quant::BlockQ4_0);
    case WeightFormat::Q4_1: return size_t(c / 32) * sizeof(quant::BlockQ4_1);
    case WeightFormat::Q8_0: return size_t(c / 32) * sizeof(quant::BlockQ8_0);
    case WeightFormat::Q4_K: return size_t(c / 256) * sizeof(quant::BlockQ4_K);
    case WeightFormat::Q6_K: return size_t(c / 256) * sizeof(quant::BlockQ6_K);
  }
  return 0;
}

void check_view(const WeightView& w) {
  OPTIQ_CHECK(w.rows >= 0 && w.cols > 0, "bad weight shape");
  OPTIQ_CHECK(w.data != nullptr || w.rows == 0, "weight data missing");
  if (w.format == WeightFormat::MlxAffine) {
    OPTIQ_CHECK(quant::mlx_bits_supported(w.bits), "mlx affine: bits must be 2,3,4,5,6 or 8");
    OPTIQ_CHECK(quant::mlx_group_size_supported(w.group_size), "mlx affine: bad group size");
    OPTIQ_CHECK(w.scale_dtype == DType::F32 || w.scale_dtype == DType::F16 ||
                    w.scale_dtype == DType::BF16,
                "mlx affine: scales must be F32, F16 or BF16");
    OPTIQ_CHECK(w.scales != nullptr && w.biases != nullptr, "mlx affine: scales/biases missing");
  }
  OPTIQ_CHECK(w.cols % format_block_elems(w) == 0, "cols must be a multiple of the block size");
  OPTIQ_CHECK(w.row_bytes >= format_min_row_bytes(w), "row_bytes too small for the format");
}

void dequantize_row_scalar(const WeightView& w, int64_t r, float* out) {
  const uint8_t* row = w.data + size_t(r) * w.row_bytes;
  const int64_t c = w.cols;
  switch (w.format) {
    case WeightFormat::F32: std::memcpy(out, row, size_t(c) * 4); return;
    case WeightFormat::F16:
      for (int64_t i = 0; i < c; ++i) {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      return;
    case WeightFormat::BF16:
      for (int64_t i = 0; i < c; ++i) {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      return;
    case WeightFormat::MlxAffine: {
      const int64_t groups = c / w.group_size;
      const size_t pb = quant::param_bytes(w.scale_dtype);
      quant::dequantize_row(row, w.scales + size_t(r * groups) * pb, w.biases + size_t(r * groups) * pb,
                            w.scale_dtype, c, w.bits, w.group_size, out);
      return;
    }
    case WeightFormat::Q4_0:
      quant::dequantize_row_q4_0(reinterpret_cast<const quant::BlockQ4_0*>(row), out, c);
      return;
    case WeightFormat::Q4_1:
      quant::dequantize_row_q4_1(reinterpret_cast<const quant::BlockQ4_1*>(row), out, c);
      return;
    case WeightFormat::Q8_0:
      quant::dequantize_row_q8_0(reinterpret_cast<const quant::BlockQ8_0*>(row), out, c);
      return;
    case WeightFormat::Q4_K:
      quant::dequantize_row_q4_k(reinterpret_cast<const quant::BlockQ4_K*>(row), out, c);
      return;
    case WeightFormat::Q6_K:
      quant::dequantize_row_q6_k(reinterpret_cast<const quant::BlockQ6_K*>(row), out, c);
      return;
  }
}

}  // namespace detail

void matmul_ref(const WeightView& w, const float* x, int64_t n, float* y) {
  detail::check_view(w);
  const int64_t rows = w.rows, cols = w.cols;
  if (rows == 0 || n <= 0) return;
  const int threads = detail::threads_for(double(rows) * double(cols) * double(n));
  detail::parallel_chunks(rows, 16, threads, [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      detail::dequantize_row_scalar(w, r, buf.data());
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = x + i * cols;
        float acc = 0.0f;
        for (int64_t k = 0; k < cols; ++k) acc += buf[size_t(k)] * xi[k];
        y[i * rows + r] = acc;
      }
    }
  });
}

void matmul(const WeightView& w, const float* x, int64_t n, float* y) {
  if (active_isa() == Isa::Avx2) {
    detail::check_view(w);
    if (w.rows == 0 || n <= 0) return;
    if (detail::qmatmul_packed(&w, &y, 1, x, n, nullptr)) return;
    detail::matmul_avx2(w, x, n, y);
    return;
  }
  matmul_ref(w, x, n, y);
}

namespace {

void check_lowrank(const WeightView& a, const WeightView& b) {
  detail::check_view(a);
  detail::check_view(b);
  OPTIQ_CHECK(a.format == b.format && (a.format == WeightFormat::F32 || a.format == WeightFormat::F16 || a.format == WeightFormat::BF16),
              "lowrank_add: a and b must be F32, F16 or BF16 alike");
  OPTIQ_CHECK(a.cols == b.rows, "lowrank_add: a and b disagree on the rank");
}

// y[n, w.cols] = x[n, w.rows] · w, summed over the rows in order.
void matmul_kn_ref(const WeightView& w, const float* x, int64_t n, float* y) {
  const int64_t rows = w.rows, cols = w.cols;
  std::vector<float> buf(static_cast<size_t>(cols));
  for (int64_t i = 0; i < n; ++i) std::fill(y + i * cols, y + (i + 1) * cols, 0.0f);
  for (int64_t k = 0; k < rows; ++k) {
    detail::dequantize_row_scalar(w, k, buf.data());
    for (int64_t i = 0; i < n; ++i) {
      const float xk = x[i * rows + k];
      float* yi = y + i * cols;
      for (int64_t c = 0; c < cols; ++c) yi[c] += xk * buf[size_t(c)];
    }
  }
}

}  // namespace

void lowrank_add_ref(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y) {
  check_lowrank(a, b);
  std::vector<float> t(static_cast<size_t>(n * a.cols)), u(static_cast<size_t>(n * b.cols));
  matmul_kn_ref(a, x, n, t.data());
  matmul_kn_ref(b, t.data(), n, u.data());
  for (size_t i = 0; i < u.size(); ++i) y[i] += alpha * u[i];
}

void lowrank_add(const WeightView& a, const WeightView& b, const float* x, int64_t n, float alpha, float* y) {
  LowRank l;
  l.a = a, l.b = b, l.alpha = alpha;
  matmul_shared_x(nullptr, &y, 0, x, n, &l, 1);
}

void matmul_shared_x(const WeightView* ws, float* const* ys, int count, const float* x, int64_t n, const LowRank* lr,
                     int lr_count, const RowPrep* prep) {
  for (int i = 0; i < count; ++i) detail::check_view(ws[i]);
  for (int t = 0; t < lr_count; ++t) {
    const LowRank& l = lr[t];
    check_lowrank(l.a, l.b);
    OPTIQ_CHECK(l.out >= 0 && (l.out < count || (count == 0 && l.out == 0)), "low-rank term: no such output");
    OPTIQ_CHECK(count == 0 || (l.a.rows == ws[l.out].cols && l.b.cols == ws[l.out].rows),
                "low-rank term: shape does not fit its weight");
    for (int64_t j = 0; l.rows && j < l.n_rows; ++j)
      OPTIQ_CHECK(l.rows[j] >= 0 && l.rows[j] < n, "low-rank term: row out of range");
  }
  if (n <= 0) return;
  if (prep && !*prep) prep = nullptr;
  if (active_isa() != Isa::Avx2) {
    if (prep) (*prep)(0, n);
    for (int i = 0; i < count; ++i) matmul_ref(ws[i], x, n, ys[i]);
    for (int t = 0; t < lr_count; ++t) {
      const LowRank& l = lr[t];
      const int64_t in = l.a.rows, out = l.b.cols;
      if (!l.rows) lowrank_add_ref(l.a, l.b, x, n, l.alpha, ys[l.out]);
      for (int64_t j = 0; l.rows && j < l.n_rows; ++j)
        lowrank_add_ref(l.a, l.b, x + l.rows[j] * in, 1, l.alpha, ys[l.out] + l.rows[j] * out);
    }
    return;
  }
  const detail::LowRankRun run(lr, lr_count, ws, ys, x, n);
  if (detail::qmatmul_packed(ws, ys, count, x, n, run.empty() ? nullptr : &run, prep)) return;
  if (prep) {  // in a region of its own: a contiguous share of the rows per thread
    const int threads = omp_in_parallel() ? 1 : int(std::min<int64_t>(n, compute_threads()));
    detail::parallel_chunks(n, (n + threads - 1) / threads, threads, *prep);
  }
  if (n == 1 && count > 0) {
    bool rows = true;
    for (int i = 0; i < count; ++i) rows = rows && ws[i].rows > 0 && !detail::packed_active(ws[i]);  // packed: a matmul each
    if (rows && detail::qmatmul_avx2_decode_shared(ws, ys, count, x, run.empty() ? nullptr : &run)) return;
  }
  for (int i = 0; i < count; ++i) matmul(ws[i], x, n, ys[i]);
  run.run();
}

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  OPTIQ_CHECK(r >= 0 && r < w.rows, "row out of range");
  detail::dequantize_row_scalar(w, r, out);
}

}  // namespace optiq::kernels
