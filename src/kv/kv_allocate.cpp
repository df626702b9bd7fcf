#include "kv/kv_allocate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "util/error.h"

namespace optiq::kv {

void check_target_bits(double target_bits, int smallest) {
  if (target_bits >= smallest) return;
  char buf[160];
  std::snprintf(buf, sizeof buf, "--target-bits %g is below the smallest candidate (%d bits): no allocation can meet it",
                target_bits, smallest);
  throw Error(ErrorKind::InvalidArgument, buf);
}

KvAllocation allocate_kv_bits(const std::vector<std::map<int, double>>& cost, double target_bits) {
  if (cost.empty()) throw Error(ErrorKind::InvalidArgument, "no KV layers to allocate");
  const std::map<int, double>& first = cost[0];
  if (first.empty()) throw Error(ErrorKind::InvalidArgument, "no candidate bit widths");
  for (auto& c : cost) {
    if (c.size() != first.size()) throw Error(ErrorKind::InvalidArgument, "every layer needs a cost for every candidate");
    for (auto a = c.begin(), b = first.begin(); a != c.end(); ++a, ++b)
      if (a->first != b->first || !std::isfinite(a->second))
        throw Error(ErrorKind::InvalidArgument, "every layer needs a finite cost for every candidate");
  }
  check_target_bits(target_bits, first.begin()->first);
  const int L = int(cost.size());
  const int hi = first.rbegin()->first;
  // The budget in whole bits over all layers (nominal bits are integers); a hair of slack for targets such
  // as 5.0 * 8 computed in floating point.
  const int budget = std::min(hi * L, int(std::floor(target_bits * L + 1e-9)));

  // best[i][b]: the smallest cost of layers [0, i) using exactly b bits (infinite if impossible).
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(size_t(L) + 1, std::vector<double>(size_t(budget) + 1, kInf));
  std::vector<std::vector<int>> choice(size_t(L) + 1, std::vector<int>(size_t(budget) + 1, 0));
  best[0][0] = 0;
  for (int i = 0; i < L; ++i)
    for (int b = 0; b <= budget; ++b) {
      if (best[size_t(i)][size_t(b)] == kInf) continue;
      for (auto& [bits, c] : cost[size_t(i)]) {  // ascending bits: on equal cost the lower width wins
        const int nb = b + bits;
        if (nb > budget) break;
        const double v = best[size_t(i)][size_t(b)] + c;
        if (v < best[size_t(i) + 1][size_t(nb)]) {
          best[size_t(i) + 1][size_t(nb)] = v;
          choice[size_t(i) + 1][size_t(nb)] = bits;
        }
      }
    }
  int end = -1;
  for (int b = 0; b <= budget; ++b)  // ascending: on equal cost fewer bits win
    if (best[size_t(L)][size_t(b)] < kInf && (end < 0 || best[size_t(L)][size_t(b)] < best[size_t(L)][size_t(end)])) end = b;
  KvAllocation a;
  a.bits.assign(size_t(L), 0);
  a.total_cost = best[size_t(L)][size_t(end)];
  for (int i = L, b = end; i > 0; --i) {
    a.bits[size_t(i) - 1] = choice[size_t(i)][size_t(b)];
    b -= choice[size_t(i)][size_t(b)];
  }
  a.mean_bits = double(end) / L;
  return a;
}

}  // namespace optiq::kv
