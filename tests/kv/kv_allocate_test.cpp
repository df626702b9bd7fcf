// The exact allocation of KV bits: the optimum of every small instance (checked by brute force), the
// budget met for targets over the whole range, determinism, and the errors.
#include "kv/kv_allocate.h"

#include <gtest/gtest.h>

#include <random>

#include "util/error.h"

using namespace optiq;
using kv::allocate_kv_bits;

namespace {

// The best total cost over every assignment with sum(bits) <= floor(target * L), by enumeration.
double brute_force(const std::vector<std::map<int, double>>& cost, double target) {
  const int L = int(cost.size());
  std::vector<int> cands;
  for (auto& [b, c] : cost[0]) cands.push_back(b);
  const int budget = int(std::floor(target * L + 1e-9));
  double best = INFINITY;
  std::vector<size_t> idx(static_cast<size_t>(L), 0);
  for (;;) {
    int bits = 0;
    double total = 0;
    for (int i = 0; i < L; ++i) {
      bits += cands[idx[size_t(i)]];
      total += cost[size_t(i)].at(cands[idx[size_t(i)]]);
    }
    if (bits <= budget) best = std::min(best, total);
    int i = 0;
    while (i < L && ++idx[size_t(i)] == cands.size()) idx[size_t(i++)] = 0;
    if (i == L) return best;
  }
}

}  // namespace

TEST(KvAllocate, FindsTheOptimumWithinTheBudgetForEveryTarget) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::vector<std::vector<int>> candidate_sets = {{4, 8}, {2, 4, 8}, {3, 5, 6, 8, 16}, {8}};
  int checked = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const auto& cands = candidate_sets[size_t(trial) % candidate_sets.size()];
    const int L = 1 + trial % 6;
    std::vector<std::map<int, double>> cost(static_cast<size_t>(L));
    for (auto& c : cost) {
      double prev = 1.0 + 10 * u(rng);  // more bits, less error (as measured KL behaves)
      for (int b : cands) c[b] = prev *= 0.05 + 0.5 * u(rng);
    }
    for (double target = cands.front(); target <= cands.back() + 0.5; target += 0.25) {
      auto a = allocate_kv_bits(cost, target);
      ASSERT_EQ(a.bits.size(), size_t(L));
      int sum = 0;
      double total = 0;
      for (int i = 0; i < L; ++i) {
        sum += a.bits[size_t(i)];
        total += cost[size_t(i)].at(a.bits[size_t(i)]);
      }
      EXPECT_LE(double(sum) / L, target + 1e-12);
      EXPECT_DOUBLE_EQ(a.mean_bits, double(sum) / L);
      EXPECT_DOUBLE_EQ(a.total_cost, total);
      EXPECT_NEAR(total, brute_force(cost, target), 1e-12) << "L " << L << " target " << target;
      EXPECT_EQ(allocate_kv_bits(cost, target).bits, a.bits);  // deterministic
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
}

// With candidates {4, 8} the answer is "upgrade the floor((T-4)*L/4) layers whose cost drops most".
TEST(KvAllocate, FourAndEightUpgradesTheLayersThatGainMost) {
  std::vector<std::map<int, double>> cost = {{{4, 0.9}, {8, 0.01}}, {{4, 0.1}, {8, 0.02}}, {{4, 0.3}, {8, 0.01}},
                                             {{4, 0.05}, {8, 0.04}}, {{4, 0.2}, {8, 0.1}}, {{4, 0.4}, {8, 0.05}},
                                             {{4, 0.07}, {8, 0.01}}, {{4, 0.12}, {8, 0.11}}};
  EXPECT_EQ(allocate_kv_bits(cost, 4.0).bits, (std::vector<int>{4, 4, 4, 4, 4, 4, 4, 4}));
  EXPECT_EQ(allocate_kv_bits(cost, 4.5).bits, (std::vector<int>{8, 4, 4, 4, 4, 4, 4, 4}));
  EXPECT_EQ(allocate_kv_bits(cost, 5.0).bits, (std::vector<int>{8, 4, 4, 4, 4, 8, 4, 4}));
  EXPECT_EQ(allocate_kv_bits(cost, 5.49).bits, (std::vector<int>{8, 4, 4, 4, 4, 8, 4, 4}));
  EXPECT_EQ(allocate_kv_bits(cost, 5.5).bits, (std::vector<int>{8, 4, 8, 4, 4, 8, 4, 4}));
  EXPECT_EQ(allocate_kv_bits(cost, 8.0).bits, (std::vector<int>(8, 8)));
  EXPECT_EQ(allocate_kv_bits(cost, 12.0).bits, (std::vector<int>(8, 8)));
  // Equal costs: the fewer bits.
  EXPECT_EQ(allocate_kv_bits({{{4, 0.1}, {8, 0.1}}}, 8.0).bits, (std::vector<int>{4}));
}

TEST(KvAllocate, ImpossibleTargetsAndBadCostsAreClearErrors) {
  auto msg = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::vector<std::map<int, double>> cost = {{{4, 0.5}, {8, 0.1}}};
  EXPECT_EQ(msg([&] { allocate_kv_bits(cost, 3.5); }),
            "--target-bits 3.5 is below the smallest candidate (4 bits): no allocation can meet it");
  EXPECT_EQ(msg([&] { allocate_kv_bits({}, 5); }), "no KV layers to allocate");
  EXPECT_EQ(msg([&] { allocate_kv_bits({{{4, 0.5}, {8, 0.1}}, {{4, 0.5}}}, 5); }), "every layer needs a cost for every candidate");
  EXPECT_EQ(msg([&] { allocate_kv_bits({{{4, NAN}, {8, 0.1}}}, 5); }), "every layer needs a finite cost for every candidate");
}
