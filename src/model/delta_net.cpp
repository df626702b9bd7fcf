// Gated DeltaNet linear attention (qwen3_5, qwen3_next), for every row of a batch:
//   [q|k|v], z, b, a = projections of h;  [q|k|v] = silu(causal depthwise conv over time, with state);
//   q = l2norm(q) / sqrt(Dk), k = l2norm(k);  beta = sigmoid(b);  g = -exp(A_log) * softplus(a + dt_bias);
//   o = gated delta rule over the sequence's recurrent state (kernels/gated_delta.h);
//   out = out_proj(rms_norm(o) * norm * silu(z))    (per value head)
// A sequence's rows are taken in order (rows of different sequences may interleave in the batch); the
// conv inputs and the delta-rule state live in the KV cache, which also keeps snapshots of them where it
// asks (page boundaries, a prompt's end) so that prefixes can be shared without rewinding.
#include "util/omp.h"

#include <cmath>
#include <cstring>

#include "kernels/gated_delta.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "util/cpu.h"
#include "util/error.h"

namespace optiq::model {

namespace {

float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

void l2_normalise(float* x, int n, float scale) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = float(double(scale) / std::sqrt(ss + 1e-6));
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

struct Segment {
  int32_t seq;
  std::vector<int64_t> rows;  // batch rows in position order
  int64_t start = 0;          // first index in the permuted arrays
  std::vector<std::pair<int, float*>> snapshots;  // (row index within segment, where the state goes)
};

}  // namespace

void Model::delta_net(const DeltaNetBlock& d, const Batch& batch, kv::KvCache& cache, int layer, const float* h, float* out) const {
  const LinearAttention& la = config_.linear;
  const int64_t N = int64_t(batch.size()), kd = la.key_dim(), vd = la.value_dim(), C = la.conv_dim();
  const int Hk = la.num_key_heads, Hv = la.num_value_heads, Dk = la.key_head_dim, Dv = la.value_head_dim;
  const int K = la.conv_kernel, rep = Hv / Hk;
  [[maybe_unused]] const int threads = compute_threads();  // unused where OpenMP is off (the TSan build)

  // 1. Projections, in batch order.
  std::vector<float> mixed(size_t(N * C)), z(size_t(N * vd)), bb(size_t(N * Hv)), aa(size_t(N * Hv));
  if (d.in_qkvz.w.rows) {
    // qwen3_next: per key head g, [q (Dk) | k (Dk) | v (rep*Dv) | z (rep*Dv)].
    const int64_t W = 2 * kd + 2 * vd, group = 2 * Dk + 2 * int64_t(rep) * Dv;
    std::vector<float> qkvz(size_t(N * W));
    kernels::matmul(d.in_qkvz.w, h, N, qkvz.data());
    for (int64_t r = 0; r < N; ++r)
      for (int g = 0; g < Hk; ++g) {
        const float* src = qkvz.data() + r * W + g * group;
        float* m = mixed.data() + r * C;
        std::memcpy(m + g * Dk, src, size_t(Dk) * 4);
        std::memcpy(m + kd + g * Dk, src + Dk, size_t(Dk) * 4);
        std::memcpy(m + 2 * kd + int64_t(g) * rep * Dv, src + 2 * Dk, size_t(rep) * size_t(Dv) * 4);
        std::memcpy(z.data() + r * vd + int64_t(g) * rep * Dv, src + 2 * Dk + int64_t(rep) * Dv, size_t(rep) * size_t(Dv) * 4);
      }
  } else {
    kernels::matmul(d.in_qkv.w, h, N, mixed.data());
    kernels::matmul(d.in_z.w, h, N, z.data());
  }
  if (d.in_ba.w.rows) {
    // qwen3_next: per key head g, [b (rep) | a (rep)].
    std::vector<float> ba(size_t(N * 2 * Hv));
    kernels::matmul(d.in_ba.w, h, N, ba.data());
    for (int64_t r = 0; r < N; ++r)
      for (int g = 0; g < Hk; ++g)
        for (int i = 0; i < rep; ++i) {
          bb[size_t(r * Hv + g * rep + i)] = ba[size_t(r * 2 * Hv + g * 2 * rep + i)];
          aa[size_t(r * Hv + g * rep + i)] = ba[size_t(r * 2 * Hv + g * 2 * rep + rep + i)];
        }
  } else {
    kernels::matmul(d.in_b.w, h, N, bb.data());
    kernels::matmul(d.in_a.w, h, N, aa.data());
  }

  // Rows by sequence, and where the cache wants state snapshots (asked for here, from one thread).
  std::vector<Segment> segs;
  for (int64_t r = 0; r < N; ++r) {
    size_t s = 0;
    while (s < segs.size() && segs[s].seq != batch.seq_ids[size_t(r)]) ++s;
    if (s == segs.size()) {
      segs.emplace_back();
      segs.back().seq = batch.seq_ids[size_t(r)];
    }
    OPTIQ_CHECK(segs[s].rows.empty() || batch.positions[size_t(r)] == batch.positions[size_t(segs[s].rows.back())] + 1,
                "a sequence's batch rows must be consecutive positions");
    segs[s].rows.push_back(r);
  }
  std::vector<int64_t> perm;
  for (Segment& sg : segs) {
    sg.start = int64_t(perm.size());
    perm.insert(perm.end(), sg.rows.begin(), sg.rows.end());
    for (size_t t = 0; t < sg.rows.size(); ++t) {
      const int32_t n = batch.positions[size_t(sg.rows[t])] + 1;
      if (cache.wants_snapshot(sg.seq, n)) sg.snapshots.push_back({int(t), cache.snapshot(sg.seq, layer, n)});
    }
  }

  // 2. Causal depthwise conv + silu per sequence: buf = [conv state (K-1 rows) | the segment's inputs].
  std::vector<float> y(size_t(N * C));
  for (Segment& sg : segs) {
    const int64_t T = int64_t(sg.rows.size());
    float* state = cache.state(sg.seq, layer);  // [K-1, C] conv inputs, then S [Hv, Dv, Dk]
    std::vector<float> buf(size_t((K - 1 + T) * C));
    std::memcpy(buf.data(), state, size_t((K - 1) * C) * 4);
    for (int64_t t = 0; t < T; ++t) std::memcpy(buf.data() + (K - 1 + t) * C, mixed.data() + sg.rows[size_t(t)] * C, size_t(C) * 4);
#pragma omp parallel for num_threads(threads) schedule(static) if (T * C > 32768)
    for (int64_t t = 0; t < T; ++t) {
      float* yr = y.data() + (sg.start + t) * C;
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        for (int j = 0; j < K; ++j) acc += d.conv[size_t(c * K + j)] * buf[size_t((t + j) * C + c)];
        yr[c] = acc / (1.0f + std::exp(-acc));
      }
    }
    for (auto& [t, snap] : sg.snapshots) std::memcpy(snap, buf.data() + (t + 1) * C, size_t((K - 1) * C) * 4);
    std::memcpy(state, buf.data() + T * C, size_t((K - 1) * C) * 4);
  }

  // 3. Normalised q, k; beta and log decay per value head (permuted order).
  std::vector<float> beta(size_t(N * Hv)), g(size_t(N * Hv));
  const float q_scale = 1.0f / std::sqrt(float(Dk));
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
  for (int64_t i = 0; i < N; ++i) {
    float* yr = y.data() + i * C;
    for (int hk = 0; hk < Hk; ++hk) {
      l2_normalise(yr + hk * Dk, Dk, q_scale);
      l2_normalise(yr + kd + hk * Dk, Dk, 1.0f);
    }
    const int64_t r = perm[size_t(i)];
    for (int hv = 0; hv < Hv; ++hv) {
      beta[size_t(i * Hv + hv)] = 1.0f / (1.0f + std::exp(-bb[size_t(r * Hv + hv)]));
      g[size_t(i * Hv + hv)] = d.neg_exp_a[size_t(hv)] * softplus(aa[size_t(r * Hv + hv)] + d.dt_bias[size_t(hv)]);
    }
  }

  // 4. The delta rule per (sequence, value head), in pieces that end where a snapshot is taken.
  std::vector<float> o(size_t(N * vd));
  const int64_t conv_floats = int64_t(K - 1) * C, head_floats = int64_t(Dv) * Dk;
  std::vector<float*> states(segs.size());
  for (size_t s = 0; s < segs.size(); ++s) states[s] = cache.state(segs[s].seq, layer);
  const int64_t tasks = int64_t(segs.size()) * Hv;
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (int64_t task = 0; task < tasks; ++task) {
    const Segment& sg = segs[size_t(task / Hv)];
    const int hv = int(task % Hv), hk = la.tiled_value_heads ? hv % Hk : hv / rep;
    float* S = states[size_t(task / Hv)] + conv_floats + hv * head_floats;
    const int T = int(sg.rows.size());
    size_t next_snap = 0;
    for (int t0 = 0; t0 < T;) {
      int t1 = T;  // piece [t0, t1)
      if (next_snap < sg.snapshots.size()) t1 = sg.snapshots[next_snap].first + 1;
      kernels::DeltaHeadIo io;
      const int64_t i0 = sg.start + t0;
      io.q = y.data() + i0 * C + hk * Dk;
      io.k = y.data() + i0 * C + kd + hk * Dk;
      io.qk_stride = size_t(C);
      io.v = y.data() + i0 * C + 2 * kd + int64_t(hv) * Dv;
      io.v_stride = size_t(C);
      io.g = g.data() + i0 * Hv + hv;
      io.beta = beta.data() + i0 * Hv + hv;
      io.ab_stride = size_t(Hv);
      io.out = o.data() + i0 * vd + int64_t(hv) * Dv;
      io.out_stride = size_t(vd);
      // The recurrent form for prefill too: on CPUs it is the faster one (bench/delta_bench: at Qwen3.5's
      // 128 x 128 heads, 216k tokens/s/head against the chunked form's 145k at 512 tokens, which does more
      // arithmetic and only wins where matmuls are much faster than vector code, as on GPUs).
      kernels::gated_delta_recurrent(io, t1 - t0, Dk, Dv, S);
      if (next_snap < sg.snapshots.size() && t1 == sg.snapshots[next_snap].first + 1) {
        std::memcpy(sg.snapshots[next_snap].second + conv_floats + hv * head_floats, S, size_t(head_floats) * 4);
        ++next_snap;
      }
      t0 = t1;
    }
  }

  // 5. Gated RMS norm per value head, back in batch order; out_proj.
  std::vector<float> gated(size_t(N * vd));
#pragma omp parallel for num_threads(threads) schedule(static) if (N > 1)
  for (int64_t i = 0; i < N; ++i) {
    const int64_t r = perm[size_t(i)];
    for (int hv = 0; hv < Hv; ++hv) {
      float* dst = gated.data() + r * vd + int64_t(hv) * Dv;
      kernels::rms_norm(o.data() + i * vd + int64_t(hv) * Dv, d.norm.data(), Dv, config_.rms_norm_eps, dst);
      const float* zr = z.data() + r * vd + int64_t(hv) * Dv;
      for (int j = 0; j < Dv; ++j) dst[j] *= zr[j] / (1.0f + std::exp(-zr[j]));
    }
  }
  kernels::matmul(d.out_proj.w, gated.data(), N, out);
}

}  // namespace optiq::model
