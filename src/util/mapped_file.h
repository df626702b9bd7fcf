#pragma once
// A read-only memory-mapped file. Weights are used in place from the mapping.
#include <cstddef>
#include <cstdint>
#include <string>

namespace optiq {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the file
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Gives back the memory of the whole pages inside [p, p + n) when that range lies in this mapping (the
  // pages are read from the file again if touched later): for bytes the process keeps a copy of elsewhere.
  // Returns the bytes given back (0 when the range is not in this mapping).
  size_t release(const uint8_t* p, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string read_text_file(const std::string& path);  // throws Error naming the file
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace optiq
