#pragma once
// A random-weight model of a named shape (model::synthetic_shape) written in `format` into a fresh scratch
// folder: the model folder, or the .gguf file for GGUF formats.
#include <string>

#include "model/synthetic.h"
#include "test_paths.h"

namespace optiq::test {

inline std::string write_test_model(const std::string& shape, const std::string& format) {
  const std::string dir = scratch_dir("model-" + shape + "-" + format);
  const std::string path = dir + "/model" + (format.rfind("gguf", 0) == 0 ? ".gguf" : "");
  model::write_synthetic_model(model::synthetic_shape(shape), format, path);
  return path;
}

}  // namespace optiq::test
