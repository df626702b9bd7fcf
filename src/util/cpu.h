#pragma once
// Run-time ISA selection. OPTIQ_FORCE_ISA=scalar runs every kernel on its scalar reference.
namespace optiq {

enum class Isa { Scalar, Avx2 };

Isa detected_isa();     // what this CPU supports
Isa active_isa();       // detected, unless OPTIQ_FORCE_ISA or set_active_isa() says otherwise
void set_active_isa(Isa isa);  // for tests: run the same code on each ISA
const char* isa_name(Isa isa);
// AVX-512 (F, BW, VL, DQ) for the AVX2 kernels that have a 512-bit variant (attention over 4-bit and fp16 K/V):
// on when this CPU has it and the active ISA is AVX2, unless OPTIQ_FORCE_ISA=avx2 (or scalar). The variants give
// the same numbers as the 256-bit code, bit for bit, except the fp16 K dots (sixteen partial sums, not eight:
// float rounding).
bool avx512_detected();
bool avx512_active();
void set_avx512_active(bool on);  // for tests and A/B runs: ignored (off) where the CPU lacks it
// AVX-512 VNNI (vpdpbusd, 256-bit form) for the batched 4-bit matmul: on with avx512_active() where the CPU has
// it. The same integer sums as maddubs + madd, so the same numbers bit for bit.
bool vnni_active();
int compute_threads();  // physical cores (OPTIQ_THREADS overrides)
// Memory the system can give without swapping (Linux MemAvailable), in bytes; 0 when unknown.
long long available_memory_bytes();

}  // namespace optiq
