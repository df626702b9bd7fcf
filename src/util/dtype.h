#pragma once
// Element types of stored tensors: plain numbers (safetensors) and ggml block formats (GGUF).
#include <cstddef>
#include <cstdint>
#include <string>

namespace optiq {

enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool,
  // ggml block formats: a row of n elements is n / block_elems() blocks of block_bytes() bytes.
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
  Unknown,
};

const char* dtype_name(DType t);
bool dtype_is_block(DType t);
int64_t dtype_block_elems(DType t);   // 1 for plain types
int64_t dtype_block_bytes(DType t);   // element size for plain types
// Bytes for n elements along a row; n must be a multiple of the block size (checked by callers).
inline size_t dtype_row_bytes(DType t, int64_t n) {
  return size_t(n / dtype_block_elems(t) * dtype_block_bytes(t));
}

}  // namespace optiq
