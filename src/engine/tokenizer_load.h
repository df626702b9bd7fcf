#pragma once
// A model's tokenizer without its weights: what `optiq template` needs (the chat template and the
// BOS/EOS strings come with the tokenizer). Same sources as LoadedModel::load: a GGUF file's metadata, or
// the tokenizer files of a Hugging Face / MLX folder.
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace optiq::engine {

// Throws Error(NotFound) for a missing path, Error(InvalidArgument) for a file that is not a .gguf.
std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& model_path);

}  // namespace optiq::engine
