// The decoder forward pass shared by llama, qwen2 and qwen3:
//   h = x + o_proj(attn(rope(q), rope(k), v));  x' = h + down(silu(gate(norm(h))) * up(norm(h)))
// Rows from many sequences go through every matmul together, so weights are read once per step.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/half.h"

namespace optiq::model {

namespace {

void linear(const Linear& l, const float* x, int64_t n, float* y) {
  kernels::matmul(l.w, x, n, y);
  if (!l.bias.empty()) {
    const int64_t out = l.w.rows;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < out; ++i) y[r * out + i] += l.bias[size_t(i)];
  }
}

void add_in_place(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

void Model::forward(const Batch& batch, kv::KvCache& cache, float* logits) const {
  const ModelConfig& c = config_;
  const int64_t N = int64_t(batch.size());
  if (N == 0) return;
  const int64_t H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, rep = nh / nkv;
  const int64_t q_dim = int64_t(nh) * hd, kv_dim = int64_t(nkv) * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int threads = compute_threads();

  for (int64_t r = 0; r < N; ++r) {
    int32_t seq = batch.seq_ids[r], pos = batch.positions[r];
    OPTIQ_CHECK(pos >= 0 && pos <= cache.length(seq), "batch rows must continue their sequence's cache");
    OPTIQ_CHECK(batch.tokens[r] >= 0 && batch.tokens[r] < c.vocab_size, "token id out of range");
    cache.extend(seq, pos + 1);
  }

  std::vector<float> x(size_t(N * H)), h(size_t(N * H)), tmp(size_t(N * H));
  std::vector<float> q(size_t(N * q_dim)), k(size_t(N * kv_dim)), v(size_t(N * kv_dim)), att(size_t(N * q_dim));
  std::vector<float> gate(size_t(N * I)), up(size_t(N * I));

  for (int64_t r = 0; r < N; ++r) kernels::dequantize_row(embed_, batch.tokens[r], x.data() + r * H);

  for (int il = 0; il < c.num_hidden_layers; ++il) {
    const DecoderLayer& L = layers_[size_t(il)];
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N; ++r) kernels::rms_norm(x.data() + r * H, L.input_norm.data(), H, c.rms_norm_eps, h.data() + r * H);
    linear(L.q_proj, h.data(), N, q.data());
    linear(L.k_proj, h.data(), N, k.data());
    linear(L.v_proj, h.data(), N, v.data());

#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N; ++r) {
      float* qr = q.data() + r * q_dim;
      float* kr = k.data() + r * kv_dim;
      if (c.qk_norm) {
        for (int hh = 0; hh < nh; ++hh) kernels::rms_norm(qr + hh * hd, L.q_norm.data(), hd, c.rms_norm_eps, qr + hh * hd);
        for (int hh = 0; hh < nkv; ++hh) kernels::rms_norm(kr + hh * hd, L.k_norm.data(), hd, c.rms_norm_eps, kr + hh * hd);
      }
      kernels::rope(qr, nh, int(hd), int(hd), batch.positions[r], inv_freq_.data(), c.rope_traditional);
      kernels::rope(kr, nkv, int(hd), int(hd), batch.positions[r], inv_freq_.data(), c.rope_traditional);
      uint16_t* kc = cache.key(batch.seq_ids[r], il, batch.positions[r]);
      uint16_t* vc = cache.value(batch.seq_ids[r], il, batch.positions[r]);
      const float* vr = v.data() + r * kv_dim;
      for (int64_t i = 0; i < kv_dim; ++i) {
        kc[i] = f32_to_f16(kr[i]);
        vc[i] = f32_to_f16(vr[i]);
      }
    }

#pragma omp parallel num_threads(threads)
    {
      std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1) collapse(2)
      for (int64_t r = 0; r < N; ++r)
        for (int g = 0; g < nkv; ++g) {
          const int32_t seq = batch.seq_ids[r];
          const int n_tokens = batch.positions[r] + 1;
          scratch.resize(size_t(rep) * size_t(n_tokens));
          kernels::AttentionArgs a;
          a.q = q.data() + r * q_dim + int64_t(g) * rep * hd;
          a.rep = rep;
          a.k = cache.keys(seq, il) + int64_t(g) * hd;
          a.v = cache.values(seq, il) + int64_t(g) * hd;
          a.kv_stride = size_t(kv_dim);
          a.n_tokens = n_tokens;
          a.head_dim = int(hd);
          a.scale = scale;
          a.out = att.data() + r * q_dim + int64_t(g) * rep * hd;
          a.scratch = scratch.data();
          kernels::attention_f16(a);
        }
    }

    linear(L.o_proj, att.data(), N, tmp.data());
    add_in_place(x.data(), tmp.data(), N * H);

#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N; ++r) kernels::rms_norm(x.data() + r * H, L.post_attn_norm.data(), H, c.rms_norm_eps, h.data() + r * H);
    linear(L.gate_proj, h.data(), N, gate.data());
    linear(L.up_proj, h.data(), N, up.data());
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N; ++r) kernels::silu_mul(gate.data() + r * I, up.data() + r * I, I);
    linear(L.down_proj, gate.data(), N, tmp.data());
    add_in_place(x.data(), tmp.data(), N * H);
  }

  // Final norm and head only for the rows whose logits are wanted.
  int64_t n_out = 0;
  for (int64_t r = 0; r < N; ++r)
    if (batch.want_logits[r]) {
      kernels::rms_norm(x.data() + r * H, final_norm_.data(), H, c.rms_norm_eps, h.data() + n_out * H);
      ++n_out;
    }
  if (n_out) kernels::matmul(lm_head_, h.data(), n_out, logits);
}

}  // namespace optiq::model
