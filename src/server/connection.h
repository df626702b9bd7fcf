#pragma once
// The connections optiq serves. cpp-httplib parses requests and routes them; this file owns the sockets,
// so that a slow or hostile client holds a worker thread for a bounded time:
// - a whole request (request line, headers and body) must arrive within the request deadline;
// - its headers (request line included) within a byte budget, whatever the number of lines;
// - no single read or write may stall past httplib's read / write timeouts;
// - an idle keep-alive connection is closed after httplib's keep-alive timeout.
// It also tells a handler which socket it serves (to notice a client that went away).
#include <httplib.h>

#include <atomic>
#include <cstddef>
#include <functional>

namespace optiq::server {

struct ConnectionLimits {
  int request_timeout_s = 60;          // a request must arrive whole within this many seconds
  size_t max_header_bytes = 64u << 10;  // request line and headers together
};

// Which limit stopped reading the current request, if one did.
enum class ReadLimit { None, Timeout, HeaderTooLarge };

// The connection the calling thread serves: its socket (-1 outside a connection) and the limit that
// stopped reading its current request. Handlers and httplib's error handler run on that thread.
struct ConnectionState {
  int fd = -1;
  ReadLimit limit = ReadLimit::None;
  bool close_after_answer = false;
};
const ConnectionState& current_connection();

// Ends the current connection once this request's answer is written: for answers given without reading the
// request's body, whose bytes would otherwise be taken for the next request. Sets Connection: close on `res`.
void close_after_answer(httplib::Response& res);
// True when the request carries a body (Content-Length > 0, or Transfer-Encoding).
bool request_has_body(const httplib::Request& req);

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(ConnectionLimits limits) : limits_(limits) {}
  // After binding: lets `backlog` connections wait to be accepted (httplib listens with a backlog of 5, which
  // drops connections in a burst; their clients retry after seconds).
  void raise_backlog(int backlog);
  // Fills in the answer for a limit (408 / 431 in the API's error shape); used when the limit is hit while the
  // request line is read, before httplib knows the request (httplib's error handler answers the other cases).
  void set_limit_answer(std::function<void(ReadLimit, httplib::Response&)> f) { limit_answer_ = std::move(f); }
  // Stops accepting, also before listen_after_bind has started (httplib's stop() does nothing until then, so a
  // SIGTERM right after binding was lost). Async-signal-safe.
  void stop_listening();
  bool stop_requested() const { return stop_requested_; }

 private:
  bool process_and_close_socket(socket_t sock) override;
  // Waits for the next request's first byte: false once the keep-alive timeout passes or the server stops.
  bool wait_for_request(socket_t sock) const;
  ConnectionLimits limits_;
  std::atomic<bool> stop_requested_{false};
  std::function<void(ReadLimit, httplib::Response&)> limit_answer_;
};

}  // namespace optiq::server
