#include "util/large_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <new>
#include <utility>

namespace optiq {

LargeBuffer::LargeBuffer(size_t bytes, bool huge_pages) : size_(bytes) {
  if (!huge_pages || bytes < kHugePage) {
    data_ = static_cast<uint8_t*>(::operator new(bytes == 0 ? 1 : bytes, std::align_val_t(64)));
    return;
  }
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t len = (bytes + page - 1) / page * page;
  // Map a huge page more than needed, then unmap the ends so that what stays starts on a 2 MiB boundary.
  void* p = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (base + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (start > base) munmap(p, start - base);
  const uintptr_t end = base + len + kHugePage;
  if (end > start + len) munmap(reinterpret_cast<void*>(start + len), end - (start + len));
  data_ = reinterpret_cast<uint8_t*>(start);
  mapped_ = len;
  static const bool thp = [] { const char* e = std::getenv("OPTIQ_THP"); return !(e && *e == '0'); }();
  if (thp) madvise(data_, len, MADV_HUGEPAGE);  // advice only: an error (no THP in this kernel) changes nothing
}

void LargeBuffer::reset() {
  if (mapped_) munmap(data_, mapped_);
  else if (data_) ::operator delete(data_, std::align_val_t(64));
  data_ = nullptr, size_ = 0, mapped_ = 0;
}

LargeBuffer::~LargeBuffer() { reset(); }

LargeBuffer::LargeBuffer(LargeBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, 0)) {}

LargeBuffer& LargeBuffer::operator=(LargeBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr), size_ = std::exchange(o.size_, 0), mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

}  // namespace optiq
