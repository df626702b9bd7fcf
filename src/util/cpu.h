#pragma once
// Run-time ISA selection. OPTIQ_FORCE_ISA=scalar runs every kernel on its scalar reference.
namespace optiq {

enum class Isa { Scalar, Avx2 };

Isa detected_isa();     // what this CPU supports
Isa active_isa();       // detected, unless OPTIQ_FORCE_ISA or set_active_isa() says otherwise
void set_active_isa(Isa isa);  // for tests: run the same code on each ISA
const char* isa_name(Isa isa);
int compute_threads();  // physical cores (OPTIQ_THREADS overrides)
// Memory the system can give without swapping (Linux MemAvailable), in bytes; 0 when unknown.
long long available_memory_bytes();

}  // namespace optiq
