#include "engine/adapter_scope.h"

namespace optiq::engine {

namespace {
thread_local int32_t t_active = 0;
}

AdapterScope::AdapterScope(model::Model& m, const std::string& names) : previous_(t_active) {
  t_active = m.resolve_adapters(names);
}

AdapterScope::~AdapterScope() { t_active = previous_; }

int32_t AdapterScope::current() { return t_active; }

}  // namespace optiq::engine
