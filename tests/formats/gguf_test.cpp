#include <gtest/gtest.h>

#include <fstream>

#include "formats/gguf.h"
#include "test_paths.h"
#include "util/error.h"

using namespace optiq;
using namespace optiq::formats;

TEST(Gguf, ReadsStories260KMetadataAndTensors) {
  std::string path = test::shared_path("models/stories260K/stories260K.gguf");
  OPTIQ_REQUIRE_SHARED(path);
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.embedding_length", 0), 64);
  EXPECT_EQ(f.get_int("llama.block_count", 0), 5);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f.tensors().size(), 48u);
  auto* t = f.find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->ne, (std::vector<int64_t>{64, 512}));
}

TEST(Gguf, WriterRoundTrip) {
  std::string dir = test::scratch_dir("gguf_roundtrip");
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 7);
  w.set_f32("x.eps", 1e-5f);
  w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> bytes(v.size() * 4);
  memcpy(bytes.data(), v.data(), bytes.size());
  w.add_tensor("t", DType::F32, {3, 2}, bytes);
  w.write(dir + "/m.gguf");
  GgufFile f(dir + "/m.gguf");
  EXPECT_EQ(f.get_int("llama.block_count", 0), 7);
  EXPECT_FLOAT_EQ(float(f.get_float("x.eps", 0)), 1e-5f);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b", "c"}));
  auto* t = f.find_tensor("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(0, memcmp(t->data, v.data(), 24));
}

TEST(Gguf, TruncatedFileIsAnErrorNamingTheFile) {
  std::string path = test::shared_path("models/stories260K/stories260K.gguf");
  OPTIQ_REQUIRE_SHARED(path);
  std::string dir = test::scratch_dir("gguf_trunc");
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  for (size_t cut : {size_t(3), size_t(30), size_t(5000), all.size() - 100}) {
    std::string p = dir + "/cut.gguf";
    std::ofstream(p, std::ios::binary).write(all.data(), std::streamsize(cut));
    try {
      GgufFile f(p);
      FAIL() << "accepted a file cut at " << cut;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.gguf"), std::string::npos) << e.what();
    }
  }
}
