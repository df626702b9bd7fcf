// A missing, truncated or inconsistent model gives one clear error naming the file and tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "test_paths.h"
#include "util/error.h"

using namespace optiq;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::string& path) {
  try {
    model::Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string fresh_model(const std::string& name, const std::string& format = "bf16") {
  std::string dir = test::scratch_dir(name);
  model::write_synthetic_model(model::synthetic_shape("tiny-llama"), format, dir);
  return dir;
}

TEST(ModelLoad, MissingFolderOrConfig) {
  EXPECT_NE(error_of("/nonexistent/model").find("no such model"), std::string::npos);
  std::string dir = test::scratch_dir("noconfig");
  EXPECT_NE(error_of(dir).find("no config.json"), std::string::npos);
}

TEST(ModelLoad, UnknownArchitectureNamesIt) {
  std::string dir = fresh_model("unknown_arch");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["model_type"] = "gpt_neox";
  std::ofstream(dir + "/config.json") << cfg.dump();
  std::string e = error_of(dir);
  EXPECT_NE(e.find("model_type 'gpt_neox' is not supported"), std::string::npos) << e;
}

TEST(ModelLoad, TruncatedSafetensorsNamesTheFile) {
  std::string dir = fresh_model("truncated");
  std::string f = dir + "/model.safetensors";
  fs::resize_file(f, fs::file_size(f) - 1000);
  std::string e = error_of(dir);
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(ModelLoad, WrongShapeNamesTheTensor) {
  std::string dir = fresh_model("wrong_shape");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["intermediate_size"] = 640;
  std::ofstream(dir + "/config.json") << cfg.dump();
  std::string e = error_of(dir);
  EXPECT_NE(e.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("expected [640, 256]"), std::string::npos) << e;
}

TEST(ModelLoad, MissingTensorNamesIt) {
  std::string dir = fresh_model("missing_tensor");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["num_hidden_layers"] = 3;
  std::ofstream(dir + "/config.json") << cfg.dump();
  std::string e = error_of(dir);
  EXPECT_NE(e.find("missing tensor 'model.layers.2.input_layernorm.weight'"), std::string::npos) << e;
}

TEST(ModelLoad, MlxBitsDisagreeingWithConfig) {
  std::string dir = fresh_model("mlx_bits", "mlx4");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["quantization"]["bits"] = 8;
  std::ofstream(dir + "/config.json") << cfg.dump();
  std::string e = error_of(dir);
  EXPECT_NE(e.find("packed at 4 bits but config.json says 8"), std::string::npos) << e;
}

TEST(ModelLoad, UnknownDtypeIsAnError) {
  std::string dir = test::scratch_dir("bad_dtype");
  model::write_synthetic_model(model::synthetic_shape("tiny-llama"), "f32", dir);
  // Rewrite the file with the embedding stored as I64 (not a weight type).
  formats::SafetensorsFile in(dir + "/model.safetensors");
  formats::SafetensorsWriter w;
  for (auto& [name, t] : in.tensors()) {
    std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
    if (name == "model.embed_tokens.weight") {
      bytes.resize(bytes.size() * 2);
      w.add(name, DType::I64, t.shape, bytes);
    } else {
      w.add(name, t.dtype, t.shape, bytes);
    }
  }
  w.write(dir + "/model2.safetensors");
  fs::rename(dir + "/model2.safetensors", dir + "/model.safetensors");
  std::string e = error_of(dir);
  EXPECT_NE(e.find("model.embed_tokens.weight' has dtype I64"), std::string::npos) << e;
}

TEST(ModelLoad, TruncatedGgufNamesTheFile) {
  std::string dir = test::scratch_dir("gguf_trunc_model");
  std::string f = dir + "/m.gguf";
  model::write_synthetic_model(model::synthetic_shape("tiny-qwen3"), "gguf-q8_0", f);
  fs::resize_file(f, fs::file_size(f) / 2);
  std::string e = error_of(f);
  EXPECT_NE(e.find("m.gguf"), std::string::npos) << e;
}

}  // namespace
