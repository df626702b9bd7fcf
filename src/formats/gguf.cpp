#include "formats/gguf.h"

#include <cstring>
#include <fstream>

#include "util/error.h"

namespace optiq::formats {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr uint64_t kMaxArray = uint64_t(1) << 32;
constexpr int kMaxDepth = 4;

class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}
  size_t pos() const { return pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::BadModel, path_ + ": corrupt GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  void need(uint64_t k) const {
    if (k > n_ - pos_) fail("file is truncated");
  }
  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string() {
    uint64_t len = read<uint64_t>();
    need(len);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& path_;
};

GgufValue read_value(Reader& r, GgufType type, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::U8: v.i = r.read<uint8_t>(); break;
    case GgufType::I8: v.i = r.read<int8_t>(); break;
    case GgufType::U16: v.i = r.read<uint16_t>(); break;
    case GgufType::I16: v.i = r.read<int16_t>(); break;
    case GgufType::U32: v.i = r.read<uint32_t>(); break;
    case GgufType::I32: v.i = r.read<int32_t>(); break;
    case GgufType::U64: v.u = r.read<uint64_t>(); v.i = int64_t(v.u); break;
    case GgufType::I64: v.i = r.read<int64_t>(); break;
    case GgufType::F32: v.f = r.read<float>(); break;
    case GgufType::F64: v.f = r.read<double>(); break;
    case GgufType::Bool: v.i = r.read<uint8_t>() != 0; break;
    case GgufType::String: v.s = r.read_string(); break;
    case GgufType::Array: {
      if (depth >= kMaxDepth) r.fail("arrays nested too deeply");
      uint32_t et = r.read<uint32_t>();
      if (et > uint32_t(GgufType::F64)) r.fail("unknown array element type " + std::to_string(et));
      uint64_t count = r.read<uint64_t>();
      if (count > kMaxArray) r.fail("array too long");
      // Each element takes at least one byte: reject counts the file cannot hold before allocating.
      r.need(count);
      v.elem_type = GgufType(et);
      v.arr.reserve(size_t(count));
      for (uint64_t k = 0; k < count; ++k) v.arr.push_back(read_value(r, v.elem_type, depth + 1));
      break;
    }
    default: r.fail("unknown value type " + std::to_string(uint32_t(type)));
  }
  return v;
}

}  // namespace

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

DType dtype_from_ggml(uint32_t t) {
  switch (t) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 6: return DType::Q5_0;
    case 7: return DType::Q5_1;
    case 8: return DType::Q8_0;
    case 10: return DType::Q2_K;
    case 11: return DType::Q3_K;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 15: return DType::Q8_K;
    case 24: return DType::I8;
    case 25: return DType::I16;
    case 26: return DType::I32;
    case 27: return DType::I64;
    case 28: return DType::F64;
    case 30: return DType::BF16;
    default: return DType::Unknown;
  }
}

uint32_t ggml_from_dtype(DType t) {
  for (uint32_t k = 0; k < 40; ++k)
    if (dtype_from_ggml(k) == t) return k;
  return 0xffffffff;
}

GgufFile::GgufFile(const std::string& path) : file_(path) {
  Reader r(file_.data(), file_.size(), file_.path());
  if (file_.size() < 24) r.fail("file is too small to be GGUF");
  uint32_t magic = r.read<uint32_t>();
  if (magic != kMagic) throw Error(ErrorKind::BadModel, path + ": not a GGUF file (bad magic)");
  version_ = r.read<uint32_t>();
  if (version_ < 2 || version_ > 3)
    throw Error(ErrorKind::Unsupported, path + ": GGUF version " + std::to_string(version_) + " is not supported (need 2 or 3)");
  uint64_t n_tensors = r.read<uint64_t>();
  uint64_t n_kv = r.read<uint64_t>();
  if (n_tensors > (uint64_t(1) << 24) || n_kv > (uint64_t(1) << 24)) r.fail("absurd tensor or key count");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = r.read_string();
    uint32_t type = r.read<uint32_t>();
    if (type > uint32_t(GgufType::F64)) r.fail("unknown value type " + std::to_string(type) + " for key '" + key + "'");
    kv_[key] = read_value(r, GgufType(type), 0);
  }
  uint64_t alignment = 32;
  if (auto* a = find("general.alignment")) {
    if (a->i <= 0 || (a->i % 8) != 0) r.fail("general.alignment must be a positive multiple of 8");
    alignment = uint64_t(a->i);
  }
  tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = r.read_string();
    uint32_t n_dims = r.read<uint32_t>();
    if (n_dims == 0 || n_dims > 4) r.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims");
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = r.read<uint64_t>();
      if (dim == 0 || dim > (uint64_t(1) << 40)) r.fail("tensor '" + t.name + "' has an absurd dimension");
      t.ne.push_back(int64_t(dim));
      if (__builtin_mul_overflow(n, int64_t(dim), &n)) r.fail("tensor '" + t.name + "' is too large");
    }
    t.ggml_type = r.read<uint32_t>();
    t.dtype = dtype_from_ggml(t.ggml_type);
    t.offset = r.read<uint64_t>();
    if (t.dtype != DType::Unknown) {
      int64_t be = dtype_block_elems(t.dtype);
      if (t.ne[0] % be != 0)
        r.fail("tensor '" + t.name + "' row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
               dtype_name(t.dtype) + " block size");
      t.nbytes = uint64_t(n / be) * uint64_t(dtype_block_bytes(t.dtype));
    }
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (auto& t : tensors_) {
    if (t.offset % alignment != 0) r.fail("tensor '" + t.name + "' offset is not aligned");
    if (t.dtype == DType::Unknown) continue;  // reported by whoever needs the tensor
    if (data_start > file_.size() || t.offset > file_.size() - data_start ||
        t.nbytes > file_.size() - data_start - t.offset)
      throw Error(ErrorKind::BadModel, path + ": tensor '" + t.name + "' lies past the end of the file (truncated?)");
    t.data = file_.data() + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

static bool is_int_type(GgufType t) {
  return t == GgufType::U8 || t == GgufType::I8 || t == GgufType::U16 || t == GgufType::I16 ||
         t == GgufType::U32 || t == GgufType::I32 || t == GgufType::U64 || t == GgufType::I64 ||
         t == GgufType::Bool;
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  auto* v = find(key);
  if (!v) return def;
  if (v->type != GgufType::String) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not a string");
  return v->s;
}

int64_t GgufFile::get_int(const std::string& key, int64_t def) const {
  auto* v = find(key);
  if (!v) return def;
  if (!is_int_type(v->type)) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not an integer");
  return v->i;
}

double GgufFile::get_float(const std::string& key, double def) const {
  auto* v = find(key);
  if (!v) return def;
  if (v->type == GgufType::F32 || v->type == GgufType::F64) return v->f;
  if (is_int_type(v->type)) return double(v->i);
  throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not a number");
}

bool GgufFile::get_bool(const std::string& key, bool def) const {
  auto* v = find(key);
  if (!v) return def;
  if (!is_int_type(v->type)) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not a bool");
  return v->i != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  std::vector<std::string> out;
  auto* v = find(key);
  if (!v) return out;
  if (v->type != GgufType::Array || v->elem_type != GgufType::String)
    throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not a string array");
  out.reserve(v->arr.size());
  for (auto& e : v->arr) out.push_back(e.s);
  return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  std::vector<float> out;
  auto* v = find(key);
  if (!v) return out;
  if (v->type != GgufType::Array) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not an array");
  for (auto& e : v->arr) {
    if (e.type == GgufType::F32 || e.type == GgufType::F64) out.push_back(float(e.f));
    else if (is_int_type(e.type)) out.push_back(float(e.i));
    else throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not a numeric array");
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  std::vector<int64_t> out;
  auto* v = find(key);
  if (!v) return out;
  if (v->type != GgufType::Array) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not an array");
  for (auto& e : v->arr) {
    if (!is_int_type(e.type)) throw Error(ErrorKind::BadModel, path() + ": key '" + key + "' is not an integer array");
    out.push_back(e.i);
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- writer ----

namespace {
template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
void put_string(std::vector<uint8_t>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}
}  // namespace

void GgufWriter::set_raw(const std::string& key, std::vector<uint8_t> bytes) {
  for (auto& kv : kvs_)
    if (kv.key == key) { kv.bytes = std::move(bytes); return; }
  kvs_.push_back({key, std::move(bytes)});
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> b; put<uint32_t>(b, uint32_t(GgufType::String)); put_string(b, v); set_raw(key, std::move(b));
}
void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  std::vector<uint8_t> b; put<uint32_t>(b, uint32_t(GgufType::U32)); put<uint32_t>(b, v); set_raw(key, std::move(b));
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
  std::vector<uint8_t> b; put<uint32_t>(b, uint32_t(GgufType::I32)); put<int32_t>(b, v); set_raw(key, std::move(b));
}
void GgufWriter::set_f32(const std::string& key, float v) {
  std::vector<uint8_t> b; put<uint32_t>(b, uint32_t(GgufType::F32)); put<float>(b, v); set_raw(key, std::move(b));
}
void GgufWriter::set_bool(const std::string& key, bool v) {
  std::vector<uint8_t> b; put<uint32_t>(b, uint32_t(GgufType::Bool)); put<uint8_t>(b, v ? 1 : 0); set_raw(key, std::move(b));
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, uint32_t(GgufType::Array)); put<uint32_t>(b, uint32_t(GgufType::String)); put<uint64_t>(b, v.size());
  for (auto& s : v) put_string(b, s);
  set_raw(key, std::move(b));
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, uint32_t(GgufType::Array)); put<uint32_t>(b, uint32_t(GgufType::F32)); put<uint64_t>(b, v.size());
  for (float f : v) put<float>(b, f);
  set_raw(key, std::move(b));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, uint32_t(GgufType::Array)); put<uint32_t>(b, uint32_t(GgufType::I32)); put<uint64_t>(b, v.size());
  for (int32_t x : v) put<int32_t>(b, x);
  set_raw(key, std::move(b));
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, std::vector<uint8_t> bytes) {
  int64_t n = 1;
  for (auto d : ne) n *= d;
  OPTIQ_CHECK(ne[0] % dtype_block_elems(type) == 0, "row length must be a multiple of the block size");
  OPTIQ_CHECK(bytes.size() == size_t(n / dtype_block_elems(type) * dtype_block_bytes(type)), "tensor byte size mismatch: " + name);
  tensors_.push_back({name, type, ne, std::move(bytes)});
}

void GgufWriter::write(const std::string& path) const {
  constexpr uint64_t align = 32;
  std::vector<uint8_t> head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kvs_.size());
  for (auto& kv : kvs_) {
    put_string(head, kv.key);
    head.insert(head.end(), kv.bytes.begin(), kv.bytes.end());
  }
  uint64_t offset = 0;
  for (auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.ne.size()));
    for (auto d : t.ne) put<uint64_t>(head, uint64_t(d));
    put<uint32_t>(head, ggml_from_dtype(t.type));
    put<uint64_t>(head, offset);
    offset += (t.bytes.size() + align - 1) / align * align;
  }
  while (head.size() % align) head.push_back(0);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(ErrorKind::InvalidArgument, path + ": cannot write");
  f.write(reinterpret_cast<const char*>(head.data()), std::streamsize(head.size()));
  static const char zeros[align] = {};
  for (auto& t : tensors_) {
    f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
    size_t pad = (align - t.bytes.size() % align) % align;
    f.write(zeros, std::streamsize(pad));
  }
  if (!f) throw Error(ErrorKind::InvalidArgument, path + ": write failed (disk full?)");
}

}  // namespace optiq::formats
