#include <gtest/gtest.h>

#include <fstream>

#include "formats/safetensors.h"
#include "test_paths.h"
#include "util/error.h"

using namespace optiq;
using namespace optiq::formats;

TEST(Safetensors, RoundTrip) {
  std::string dir = test::scratch_dir("st_roundtrip");
  SafetensorsWriter w;
  w.add_f32("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  w.add("b", DType::U32, {1}, {1, 0, 0, 0});
  w.set_metadata("format", "mlx");
  w.write(dir + "/m.safetensors");
  SafetensorsFile f(dir + "/m.safetensors");
  ASSERT_EQ(f.tensors().size(), 2u);
  auto& a = f.tensors().at("a.weight");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(reinterpret_cast<const float*>(a.data)[5], 6.0f);
  EXPECT_EQ(f.metadata().at("format"), "mlx");
}

// Found by fuzz/safetensors_fuzz under UBSan: converting an empty tensor copied from a null pointer.
TEST(Safetensors, EmptyTensorsConvertToNothing) {
  std::string dir = test::scratch_dir("st_empty");
  SafetensorsWriter w;
  w.add("e", DType::F32, {0, 4}, {});
  w.add("h", DType::BF16, {0}, {});
  w.write(dir + "/e.safetensors");
  SafetensorsFile f(dir + "/e.safetensors");
  for (auto& [name, t] : f.tensors()) {
    std::vector<float> v = {1.0f};
    EXPECT_TRUE(t.to_f32(v)) << name;
    EXPECT_TRUE(v.empty()) << name;
  }
}

TEST(Safetensors, RejectsLyingHeaders) {
  std::string dir = test::scratch_dir("st_bad");
  auto write_raw = [&](const std::string& header, size_t data_bytes) {
    std::string p = dir + "/bad.safetensors";
    std::ofstream f(p, std::ios::binary);
    uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header << std::string(data_bytes, '\0');
    return p;
  };
  const char* cases[] = {
      R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",   // data missing
      R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",    // size mismatch
      R"({"t": {"dtype": "F32", "shape": [2]}})",                             // no offsets
      R"([1,2,3])",
      R"({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}})",
  };
  for (const char* h : cases) {
    std::string p = write_raw(h, 8);
    EXPECT_THROW(SafetensorsFile f(p), Error) << h;
  }
}

TEST(Safetensors, ReadsStories260K) {
  std::string path = test::shared_path("models/stories260K-hf/model.safetensors");
  OPTIQ_REQUIRE_SHARED(path);
  SafetensorsFile f(path);
  auto& e = f.tensors().at("model.embed_tokens.weight");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(f.tensors().count("lm_head.weight"), 0u);
}
