#include "engine/logit_stats.h"

#include <algorithm>
#include <cmath>

namespace optiq::engine {

LogitRow LogitRow::of(const float* l, int V) {
  LogitRow r;
  r.top = int(std::max_element(l, l + V) - l);
  const double mx = l[r.top];
  double z = 0;
  for (int j = 0; j < V; ++j) z += std::exp(double(l[j]) - mx);
  r.lse = mx + std::log(z);
  return r;
}

void DistributionStats::add(const float* a, const LogitRow& ra, const float* q, int V, int32_t next) {
  const LogitRow rq = LogitRow::of(q, V);
  double kl = 0;
  for (int j = 0; j < V; ++j) {
    const double la = a[j] - ra.lse;
    kl += std::exp(la) * (la - (q[j] - rq.lse));
  }
  kl = std::max(kl, 0.0);  // rounding can leave -1e-17 for identical rows
  nll_ref += ra.lse - a[next];
  nll += rq.lse - q[next];
  kl_sum += kl;
  kl_max = std::max(kl_max, kl);
  same_top1 += ra.top == rq.top;
  ++n;
}

void DistributionStats::add(const DistributionStats& o) {
  nll_ref += o.nll_ref;
  nll += o.nll;
  kl_sum += o.kl_sum;
  kl_max = std::max(kl_max, o.kl_max);
  n += o.n;
  same_top1 += o.same_top1;
}

double DistributionStats::ppl_ref() const { return n ? std::exp(nll_ref / double(n)) : 0.0; }
double DistributionStats::ppl() const { return n ? std::exp(nll / double(n)) : 0.0; }

}  // namespace optiq::engine
