#pragma once
// safetensors files: an 8-byte header length, a JSON header, then raw little-endian tensor data.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "util/dtype.h"
#include "util/mapped_file.h"

namespace optiq::formats {

struct TensorRef {
  std::string name;
  std::string file;            // where it came from, for error messages
  DType dtype = DType::Unknown;
  std::string dtype_name;      // as written in the file (kept for "unknown dtype" errors)
  std::vector<int64_t> shape;  // row-major, shape.back() is the fastest-varying
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
  // The values as f32 when the dtype is F32, F16 or BF16; false (out untouched) for any other dtype.
  bool to_f32(std::vector<float>& out) const;
};

DType dtype_from_safetensors(const std::string& s);
const char* safetensors_dtype_name(DType t);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // validates the header; throws Error naming the file
  const std::string& path() const { return file_.path(); }
  const std::map<std::string, TensorRef>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const MappedFile& file() const { return file_; }

 private:
  MappedFile file_;
  std::map<std::string, TensorRef> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::vector<uint8_t> bytes);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void write(const std::string& path) const;

 private:
  struct Entry { std::string name; DType dtype; std::vector<int64_t> shape; std::vector<uint8_t> bytes; };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace optiq::formats
