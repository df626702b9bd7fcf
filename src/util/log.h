#pragma once
// Minimal leveled logging to stderr. OPTIQ_LOG=debug|info|warn|error (default info).
#include <cstdarg>

namespace optiq {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Quiet = 4 };
void set_log_level(LogLevel level);
LogLevel log_level();
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define OPTIQ_LOG_INFO(...) ::optiq::log(::optiq::LogLevel::Info, __VA_ARGS__)
#define OPTIQ_LOG_WARN(...) ::optiq::log(::optiq::LogLevel::Warn, __VA_ARGS__)
#define OPTIQ_LOG_DEBUG(...) ::optiq::log(::optiq::LogLevel::Debug, __VA_ARGS__)

}  // namespace optiq
