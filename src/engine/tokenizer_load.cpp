#include "engine/tokenizer_load.h"

#include "formats/gguf.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace optiq::engine {

std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& model_path) {
  if (is_directory(model_path)) return tokenizer::Tokenizer::from_hf_dir(model_path);
  const std::string ext = ".gguf";
  bool gguf = model_path.size() >= ext.size() && model_path.compare(model_path.size() - ext.size(), ext.size(), ext) == 0;
  if (gguf && file_exists(model_path)) return tokenizer::Tokenizer::from_gguf(formats::GgufFile(model_path));
  if (file_exists(model_path)) throw Error(ErrorKind::InvalidArgument, model_path + ": not a model folder or .gguf file");
  throw Error(ErrorKind::NotFound, model_path + ": no such model folder or file");
}

}  // namespace optiq::engine
