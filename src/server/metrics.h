#pragma once
// GET /metrics: the engine's stats in the Prometheus text exposition format (version 0.0.4).
#include <string>

#include "engine/stats.h"

namespace optiq::server {

std::string prometheus_text(const engine::EngineStats& s);

}  // namespace optiq::server
