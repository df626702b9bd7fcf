#pragma once
// OpenMP, or its serial stand-in. The ThreadSanitizer tree (scripts/sanitize.sh thread) builds without OpenMP:
// libomp is not built with TSan, so every parallel loop would be reported. There the pragmas are ignored, each
// parallel region runs once on the calling thread, and these say so.
#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_thread_num() { return 0; }
inline int omp_get_num_threads() { return 1; }
inline int omp_in_parallel() { return 0; }
#endif
