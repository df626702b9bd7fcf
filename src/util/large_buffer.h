#pragma once
// Memory for large arrays that every decode step streams through (repacked weights). From 2 MiB up
// it is mapped anonymously, aligned to 2 MiB and marked for transparent huge pages (MADV_HUGEPAGE: Linux's
// default THP mode, "madvise", gives them only to memory marked so), so that a pass over it needs a TLB entry
// per 2 MiB instead of per 4 KiB. Where the system has no huge pages the mark does nothing; OPTIQ_THP=0 in the
// environment leaves it out (A/B runs). Smaller sizes come from the heap. The bytes are zero (mapped) or uninitialized (heap): callers write before they read.
#include <cstddef>
#include <cstdint>

namespace optiq {

class LargeBuffer {
 public:
  LargeBuffer() = default;
  // huge_pages false: from the heap whatever the size (memory touched a little at a time, where a huge page
  // would fault in, zeroed, 2 MiB at once). Throws std::bad_alloc.
  explicit LargeBuffer(size_t bytes, bool huge_pages = true);
  ~LargeBuffer();
  LargeBuffer(LargeBuffer&& o) noexcept;
  LargeBuffer& operator=(LargeBuffer&& o) noexcept;
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool mapped() const { return mapped_ != 0; }  // huge-page aligned mapping (size >= 2 MiB)

  static constexpr size_t kHugePage = size_t(2) << 20;

 private:
  void reset();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;  // bytes mapped at data_ (0: heap)
};

}  // namespace optiq
