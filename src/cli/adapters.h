#pragma once
// --adapter PATH | NAME=PATH (repeatable): LoRA adapters mounted over the loaded model at start-up.
#include <string>
#include <vector>

#include "model/model.h"

namespace optiq::cli {

// Loads and mounts each adapter and returns their indices; throws Error naming the flag value or the
// adapter file that is wrong.
std::vector<int> mount_adapters(model::Model& m, const std::vector<std::string>& specs);

}  // namespace optiq::cli
