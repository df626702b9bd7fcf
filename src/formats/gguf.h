#pragma once
// GGUF v2/v3 files: metadata key/values, tensor infos, tensor data used in place from the mapping.
// Every read is bounds-checked; a truncated or lying file gives an Error naming the file.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/dtype.h"
#include "util/mapped_file.h"

namespace optiq::formats {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::U8;
  int64_t i = 0;      // all integer types and bool
  uint64_t u = 0;     // U64 (and i reinterpreted)
  double f = 0;       // F32 / F64
  std::string s;      // String
  GgufType elem_type = GgufType::U8;  // Array
  std::vector<GgufValue> arr;         // Array
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the fastest-varying (row length)
  DType dtype = DType::Unknown;
  uint32_t ggml_type = 0;
  uint64_t offset = 0;      // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;
  int64_t n_elements() const;
};

DType dtype_from_ggml(uint32_t ggml_type);      // Unknown when we do not support it
uint32_t ggml_from_dtype(DType t);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const MappedFile& file() const { return file_; }
  uint32_t version() const { return version_; }

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  std::string get_string(const std::string& key, const std::string& def = "") const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3 (used to make test and benchmark models).
class GgufWriter {
 public:
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // ne in ggml order (ne[0] = row length); bytes must match the type's size.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, std::vector<uint8_t> bytes);
  void write(const std::string& path) const;  // throws Error on I/O failure

 private:
  struct Kv { std::string key; std::vector<uint8_t> bytes; };  // type tag + value, serialized
  struct Tensor { std::string name; DType type; std::vector<int64_t> ne; std::vector<uint8_t> bytes; };
  void set_raw(const std::string& key, std::vector<uint8_t> bytes);
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace optiq::formats
