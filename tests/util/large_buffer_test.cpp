// LargeBuffer: from 2 MiB up a 2 MiB-aligned mapping (huge pages where the system gives them), zero-filled;
// smaller sizes (and any size without huge pages) from the heap, 64-byte aligned; moves hand the memory over.
#include "util/large_buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <utility>

namespace optiq {
namespace {

TEST(LargeBuffer, BigBuffersAreHugePageAlignedAndZero) {
  const size_t n = LargeBuffer::kHugePage * 3 + 12345;  // not a whole number of pages
  LargeBuffer b(n);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_TRUE(b.mapped());
  EXPECT_EQ(b.size(), n);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % LargeBuffer::kHugePage, 0u);
  size_t nonzero = 0;
  for (size_t i = 0; i < n; i += 4096) nonzero += b.data()[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  std::memset(b.data(), 0xAB, n);  // every byte is writable, the last one too
  EXPECT_EQ(b.data()[n - 1], 0xAB);
}

TEST(LargeBuffer, SmallBuffersComeFromTheHeap) {
  LargeBuffer b(1000);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_FALSE(b.mapped());
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  std::memset(b.data(), 1, 1000);
}

TEST(LargeBuffer, WithoutHugePagesEvenBigBuffersComeFromTheHeap) {
  LargeBuffer b(LargeBuffer::kHugePage * 2, /*huge_pages=*/false);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_FALSE(b.mapped());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  std::memset(b.data(), 2, b.size());
}

TEST(LargeBuffer, MovesHandTheMemoryOver) {
  LargeBuffer a(LargeBuffer::kHugePage);
  a.data()[7] = 42;
  uint8_t* p = a.data();
  LargeBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[7], 42);
  LargeBuffer c(10);
  c = std::move(b);  // c's heap bytes are freed, b's mapping moves
  EXPECT_EQ(c.data(), p);
  EXPECT_TRUE(c.mapped());
  EXPECT_EQ(b.data(), nullptr);
  c = LargeBuffer();
  EXPECT_EQ(c.data(), nullptr);
}

}  // namespace
}  // namespace optiq
