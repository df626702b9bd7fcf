#include "util/cpu.h"


#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace optiq {

namespace {
std::atomic<int> g_forced{-1};
std::atomic<int> g_avx512_forced{-1};
}

Isa detected_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
    return Isa::Scalar;
  }();
  return isa;
}

Isa active_isa() {
  int f = g_forced.load(std::memory_order_relaxed);
  if (f >= 0) return Isa(f);
  static const Isa isa = [] {
    const char* e = std::getenv("OPTIQ_FORCE_ISA");
    if (e && std::strcmp(e, "scalar") == 0) return Isa::Scalar;
    return detected_isa();
  }();
  return isa;
}

bool avx512_detected() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
  }();
  return has;
}

bool avx512_active() {
  if (active_isa() != Isa::Avx2 || !avx512_detected()) return false;
  const int f = g_avx512_forced.load(std::memory_order_relaxed);
  if (f >= 0) return f != 0;
  static const bool on = [] {
    const char* e = std::getenv("OPTIQ_FORCE_ISA");
    return !(e && std::strcmp(e, "avx2") == 0);
  }();
  return on;
}

bool vnni_active() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return has && avx512_active();
}

void set_avx512_active(bool on) { g_avx512_forced.store(on && avx512_detected() ? 1 : 0); }

void set_active_isa(Isa isa) {
  if (isa == Isa::Avx2 && detected_isa() != Isa::Avx2) isa = Isa::Scalar;
  g_forced.store(int(isa));
}

const char* isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

int compute_threads() {
  static const int n = [] {
    if (const char* e = std::getenv("OPTIQ_THREADS")) {
      int v = std::atoi(e);
      if (v > 0) return v;
    }
    int hw = int(std::thread::hardware_concurrency());
    return hw > 0 ? hw : 1;
  }();
  return n;
}

}  // namespace optiq

namespace optiq {

long long available_memory_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

}  // namespace optiq
