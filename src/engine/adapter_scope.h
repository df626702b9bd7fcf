#pragma once
// Scoped adapter activation for programs that embed the engine (the shape of the seed's Python API):
//
//   model.mount_adapter(model::load_adapter("adapters/agent-a", model.config(), "agent-a"));
//   {
//     engine::AdapterScope scope(model, "agent-a");   // "a+b" stacks; "" / none / base / off: the base
//     engine::generate(lm, prompt, opts, on_token);   // runs under agent-a
//   }                                                 // the previous selection is back
//
// The selection is per thread, so threads with different active adapters never step on each other, and
// scopes nest (the innermost wins until it ends). generate() and Engine::submit() use it when their own
// adapter_set is 0.
#include <string>

#include "model/model.h"

namespace optiq::engine {

class AdapterScope {
 public:
  AdapterScope(model::Model& m, const std::string& names);  // throws Error(InvalidArgument) for unknown names
  ~AdapterScope();
  AdapterScope(const AdapterScope&) = delete;
  AdapterScope& operator=(const AdapterScope&) = delete;
  static int32_t current();  // this thread's active adapter set (0: none)

 private:
  int32_t previous_;
};

}  // namespace optiq::engine
