// A routed mixture-of-experts block (qwen3_moe, qwen3_next, qwen3_5_moe):
//   p = softmax(router h) in f32;  the top-k experts of each row (optionally renormalised);
//   out = sum_e p_e * down_e(silu(gate_e h) * up_e h)  [+ sigmoid(shared_gate h) * shared(h)]
// Rows are grouped by expert, so each expert's weights are read once per step for all rows routed to it.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"

namespace optiq::model {

namespace {
// y [n, H] = down(silu(gate x) * up x) for n rows of x.
void feed_forward(const FeedForward& f, const float* x, int64_t n, float* y) {
  const int64_t I = f.gate_proj.w.rows;
  std::vector<float> gate(size_t(n * I)), up(size_t(n * I));
  kernels::matmul(f.gate_proj.w, x, n, gate.data());
  kernels::matmul(f.up_proj.w, x, n, up.data());
  for (int64_t r = 0; r < n; ++r) kernels::silu_mul(gate.data() + r * I, up.data() + r * I, I);
  kernels::matmul(f.down_proj.w, gate.data(), n, y);
}
}  // namespace

void Model::moe(const MoeBlock& m, int64_t N, const float* h, float* out) const {
  const MoeConfig& mc = config_.moe;
  const int64_t H = config_.hidden_size, E = int64_t(m.experts.size());
  const int k = mc.experts_per_token;
  std::vector<float> probs(size_t(N * E));
  kernels::matmul(m.router.w, h, N, probs.data());
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(E));  // expert -> (row, weight)
  std::vector<int> idx(static_cast<size_t>(E));
  for (int64_t r = 0; r < N; ++r) {
    float* p = probs.data() + r * E;
    kernels::softmax(p, E);
    for (int64_t e = 0; e < E; ++e) idx[size_t(e)] = int(e);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0;
    for (int i = 0; i < k; ++i) sum += p[idx[size_t(i)]];
    for (int i = 0; i < k; ++i) {
      const int e = idx[size_t(i)];
      routed[size_t(e)].push_back({r, mc.norm_topk_prob ? p[e] / sum : p[e]});
    }
  }
  std::memset(out, 0, size_t(N * H) * sizeof(float));
  std::vector<float> xs, ys;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = routed[size_t(e)];
    if (rows.empty()) continue;
    const int64_t G = int64_t(rows.size());
    xs.resize(size_t(G * H));
    ys.resize(size_t(G * H));
    for (int64_t i = 0; i < G; ++i) std::memcpy(xs.data() + i * H, h + rows[size_t(i)].first * H, size_t(H) * sizeof(float));
    feed_forward(m.experts[size_t(e)], xs.data(), G, ys.data());
    for (int64_t i = 0; i < G; ++i) {
      float* o = out + rows[size_t(i)].first * H;
      const float w = rows[size_t(i)].second;
      for (int64_t j = 0; j < H; ++j) o[j] += w * ys[size_t(i * H + j)];
    }
  }
  if (m.has_shared) {
    std::vector<float> gate(static_cast<size_t>(N));
    ys.resize(size_t(N * H));
    kernels::matmul(m.shared_gate.w, h, N, gate.data());
    feed_forward(m.shared, h, N, ys.data());
    for (int64_t r = 0; r < N; ++r) {
      const float s = 1.0f / (1.0f + std::exp(-gate[size_t(r)]));
      for (int64_t j = 0; j < H; ++j) out[r * H + j] += s * ys[size_t(r * H + j)];
    }
  }
}

}  // namespace optiq::model
