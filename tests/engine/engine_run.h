#pragma once
// Runs one request through an Engine and collects what a client would see.
#include <chrono>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace optiq::test {

struct EngineResult {
  std::string text;
  std::string finish;
  int tokens = 0;
  int cached = 0;
};

// Drains a submitted request's events.
inline EngineResult collect(engine::RequestHandle& h) {
  EngineResult out;
  engine::GenerationEvent ev;
  while (h.next(ev, std::chrono::milliseconds(60000))) {
    if (ev.kind == engine::GenerationEvent::Kind::Text) out.text += ev.text;
    if (ev.kind == engine::GenerationEvent::Kind::Done) {
      out.finish = ev.finish_reason;
      out.tokens = ev.completion_tokens;
      out.cached = ev.cached_tokens;
      break;
    }
  }
  return out;
}

inline EngineResult run_request(engine::Engine& eng, engine::EngineRequest r) { return collect(*eng.submit(std::move(r))); }

}  // namespace optiq::test
