#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/half.h"

namespace optiq::formats {

using nlohmann::json;

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

bool TensorRef::to_f32(std::vector<float>& out) const {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) return false;
  const size_t n = size_t(numel());
  out.resize(n);
  if (n == 0) return true;  // (an empty tensor's data may be null: no memcpy from it)
  const uint16_t* h = reinterpret_cast<const uint16_t*>(data);
  if (dtype == DType::F32) std::memcpy(out.data(), data, n * 4);
  else if (dtype == DType::F16)
    for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
  else
    for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(h[i]);
  return true;
}

DType dtype_from_safetensors(const std::string& s) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I8", DType::I8},   {"U8", DType::U8},   {"I16", DType::I16},   {"U16", DType::U16},
      {"I32", DType::I32}, {"U32", DType::U32}, {"I64", DType::I64},   {"U64", DType::U64},
      {"BOOL", DType::Bool}};
  auto it = m.find(s);
  return it == m.end() ? DType::Unknown : it->second;
}

const char* safetensors_dtype_name(DType t) { return dtype_name(t); }

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  auto bad = [&](const std::string& what) -> Error {
    return Error(ErrorKind::BadModel, path + ": corrupt safetensors file: " + what);
  };
  if (file_.size() < 8) throw bad("shorter than its 8-byte header length");
  uint64_t n;
  std::memcpy(&n, file_.data(), 8);
  if (n > 100'000'000) throw bad("header length " + std::to_string(n) + " is absurd");
  if (n > file_.size() - 8) throw bad("header runs past the end of the file (truncated?)");
  std::string header(reinterpret_cast<const char*>(file_.data() + 8), size_t(n));
  if (header.empty() || header[0] != '{') throw bad("header does not start with '{'");
  json j;
  try {
    j = json::parse(header);
  } catch (const std::exception& e) {
    throw bad(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw bad("header is not a JSON object");
  const uint8_t* base = file_.data() + 8 + n;
  size_t data_len = file_.size() - 8 - size_t(n);
  std::vector<std::pair<size_t, size_t>> spans;
  for (auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (v.is_object())
        for (auto& [k, mv] : v.items())
          if (mv.is_string()) metadata_[k] = mv.get<std::string>();
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2)
      throw bad("tensor '" + name + "' has a malformed entry");
    TensorRef t;
    t.name = name;
    t.file = path;
    t.dtype_name = v["dtype"].get<std::string>();
    t.dtype = dtype_from_safetensors(t.dtype_name);
    int64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw bad("tensor '" + name + "' has a malformed shape");
      int64_t dim = d.get<int64_t>();
      if (dim < 0 || __builtin_mul_overflow(numel, dim, &numel)) throw bad("tensor '" + name + "' has an absurd shape");
      t.shape.push_back(dim);
    }
    auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) throw bad("tensor '" + name + "' has malformed offsets");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_len)
      throw bad("tensor '" + name + "' data lies outside the file (truncated?)");
    t.nbytes = size_t(e - b);
    if (t.dtype != DType::Unknown) {
      uint64_t expect;
      if (__builtin_mul_overflow(uint64_t(numel), uint64_t(dtype_block_bytes(t.dtype)), &expect) || expect != t.nbytes)
        throw bad("tensor '" + name + "' has " + std::to_string(t.nbytes) + " bytes but its shape and dtype need " +
                  std::to_string(uint64_t(numel) * uint64_t(dtype_block_bytes(t.dtype))));
    }
    t.data = base + b;
    spans.push_back({size_t(b), size_t(e)});
    tensors_[name] = std::move(t);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k)
    if (spans[k].first < spans[k - 1].second) throw bad("tensor data regions overlap");
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::vector<uint8_t> bytes) {
  entries_.push_back({name, dtype, shape, std::move(bytes)});
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) {
  std::vector<uint8_t> b(values.size() * 4);
  std::memcpy(b.data(), values.data(), b.size());
  add(name, DType::F32, shape, std::move(b));
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  size_t off = 0;
  for (auto& e : entries_) {
    h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs.push_back(' ');
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(ErrorKind::InvalidArgument, path + ": cannot write");
  uint64_t n = hs.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(hs.data(), std::streamsize(hs.size()));
  for (auto& e : entries_) f.write(reinterpret_cast<const char*>(e.bytes.data()), std::streamsize(e.bytes.size()));
  if (!f) throw Error(ErrorKind::InvalidArgument, path + ": write failed (disk full?)");
}

}  // namespace optiq::formats
