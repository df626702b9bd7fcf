#include "server/connection.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace optiq::server {

namespace {

using Clock = std::chrono::steady_clock;

thread_local ConnectionState t_conn;

// Waits until fd is ready for `events` (or has an error / hang-up, which the next call reports) or the
// deadline passes.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    // Rounded up: a wait that ends by its timeout ends at or after the deadline.
    auto left_us = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, int(std::clamp<long long>((left_us + 999) / 1000, 0, INT_MAX)));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) return;
  ip = host;
  port = std::atoi(serv);
}

// One connection's byte stream as httplib reads and writes it, with the request deadline and the header
// budget applied to what it reads. httplib reads the request line and headers a byte at a time, so reads
// come from a buffer; the stream follows the bytes it hands out to see where the headers end.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, std::chrono::microseconds read_timeout, std::chrono::microseconds write_timeout,
                   const ConnectionLimits& limits)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout), limits_(limits) {}

  bool buffered() const { return off_ < len_; }
  // A read failed (timeout, limit, socket error): the connection's byte stream is no longer in step with
  // its requests, so it ends after this request's answer.
  bool failed() const { return failed_; }
  // Bytes of answer written for the current request.
  size_t written() const { return written_; }

  void begin_request() {
    deadline_ = Clock::now() + std::chrono::seconds(limits_.request_timeout_s);
    in_headers_ = true;
    failed_ = false;
    header_bytes_ = 0;
    line_bytes_ = 0;
    lines_ = 0;
    last_ = 0;
    written_ = 0;
    t_conn.limit = ReadLimit::None;
    t_conn.close_after_answer = false;
  }

  bool is_readable() const override { return buffered() || wait_ready(fd_, POLLIN, read_deadline()); }
  bool is_writable() const override { return wait_ready(fd_, POLLOUT, Clock::now() + write_timeout_); }

  ssize_t read(char* ptr, size_t size) override {
    if (failed_) return -1;
    if (!buffered()) {
      // A client that trickles bytes keeps the socket readable: the deadline is checked, not only waited on.
      const auto until = read_deadline();
      if (!wait_ready(fd_, POLLIN, until) || Clock::now() >= deadline_) {
        if (until == deadline_ || Clock::now() >= deadline_) t_conn.limit = ReadLimit::Timeout;
        return fail();
      }
      ssize_t n;
      do n = ::recv(fd_, buf_, sizeof buf_, 0);
      while (n < 0 && errno == EINTR);
      if (n < 0) return fail();
      if (n == 0) return 0;
      off_ = 0;
      len_ = size_t(n);
    }
    size_t n = std::min(size, len_ - off_);
    if (in_headers_ && !count_header_bytes(n)) return fail();
    std::memcpy(ptr, buf_ + off_, n);
    off_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) written_ += size_t(n);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  ssize_t fail() {
    failed_ = true;
    return -1;
  }

  Clock::time_point read_deadline() const { return std::min(deadline_, Clock::now() + read_timeout_); }

  // Counts the next n buffered bytes against the header budget; shortens n to end at the blank line that
  // ends the headers (what follows is body). That line is exactly "\r\n" after the request line, as httplib
  // reads it (a bare "\n" or "\r\r\n" does not end the headers there, so it must not end the counting).
  // False once the budget is spent.
  bool count_header_bytes(size_t& n) {
    for (size_t i = 0; i < n; ++i) {
      const char c = buf_[off_ + i];
      if (c == '\n') {
        if (lines_ > 0 && line_bytes_ == 1 && last_ == '\r') {
          in_headers_ = false;
          n = i + 1;
          break;
        }
        ++lines_;
        line_bytes_ = 0;
      } else {
        ++line_bytes_;
      }
      last_ = c;
    }
    header_bytes_ += n;
    if (header_bytes_ <= limits_.max_header_bytes) return true;
    t_conn.limit = ReadLimit::HeaderTooLarge;
    return false;
  }

  int fd_;
  std::chrono::microseconds read_timeout_, write_timeout_;
  const ConnectionLimits& limits_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool in_headers_ = true, failed_ = false;
  size_t header_bytes_ = 0, line_bytes_ = 0, lines_ = 0, written_ = 0;
  char last_ = 0;
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

// Ends a connection: FIN after the last answer, then whatever the client still sends is read and dropped for
// up to a second before the socket closes. Closing with unread input would reset the connection, and a reset
// can destroy an answer (a 408, a 431, a 401 before the body) before the client has read it.
void linger_and_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto end = Clock::now() + std::chrono::seconds(1);
  char scratch[4096];
  while (wait_ready(fd, POLLIN, end)) {
    ssize_t n = ::recv(fd, scratch, sizeof scratch, 0);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  ::close(fd);
}

}  // namespace

const ConnectionState& current_connection() { return t_conn; }

bool request_has_body(const httplib::Request& req) {
  return req.has_header("Transfer-Encoding") || std::strtoll(req.get_header_value("Content-Length").c_str(), nullptr, 10) > 0;
}

void close_after_answer(httplib::Response& res) {
  t_conn.close_after_answer = true;
  res.set_header("Connection", "close");
}

bool GuardedServer::wait_for_request(socket_t sock) const {
  const auto end = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
  while (svr_sock_ != INVALID_SOCKET) {
    auto slice = std::min(end, Clock::now() + std::chrono::milliseconds(100));
    if (wait_ready(sock, POLLIN, slice)) return true;
    if (Clock::now() >= end) return false;
  }
  return false;
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  using std::chrono::microseconds;
  using std::chrono::seconds;
  ConnectionStream strm(sock, seconds(read_timeout_sec_) + microseconds(read_timeout_usec_),
                        seconds(write_timeout_sec_) + microseconds(write_timeout_usec_), limits_);
  t_conn = ConnectionState{sock, ReadLimit::None};
  bool ok = false;
  for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    if (!strm.buffered() && !wait_for_request(sock)) break;
    strm.begin_request();
    bool closed = false;
    ok = process_request(strm, /*close_connection=*/left == 1, closed, [](httplib::Request& req) {
      // httplib never reads a GET's or HEAD's body: its bytes would be taken for the next request.
      if ((req.method == "GET" || req.method == "HEAD") && request_has_body(req)) t_conn.close_after_answer = true;
    });
    if (!ok && t_conn.limit != ReadLimit::None && strm.written() == 0 && limit_answer_) {
      // A limit hit within the request line: httplib gives up without an answer; give the error's.
      httplib::Response res;
      limit_answer_(t_conn.limit, res);
      const char* reason = t_conn.limit == ReadLimit::Timeout ? "Request Timeout" : "Request Header Fields Too Large";
      const std::string raw = "HTTP/1.1 " + std::to_string(res.status) + " " + reason +
                              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(res.body.size()) +
                              "\r\nConnection: close\r\n\r\n" + res.body;
      for (size_t off = 0; off < raw.size();) {
        const ssize_t n = strm.write(raw.data() + off, raw.size() - off);
        if (n <= 0) break;
        off += size_t(n);
      }
    }
    if (!ok || closed || strm.failed() || t_conn.close_after_answer) break;
  }
  t_conn = ConnectionState{};
  linger_and_close(sock);
  return ok;
}

void GuardedServer::stop_listening() {
  stop_requested_ = true;
  socket_t s = svr_sock_.exchange(INVALID_SOCKET);
  if (s == INVALID_SOCKET) return;
  ::shutdown(s, SHUT_RDWR);  // wakes an accept() in progress
  ::close(s);
}

void GuardedServer::raise_backlog(int backlog) {
  socket_t s = svr_sock_;
  if (s != INVALID_SOCKET) ::listen(s, backlog);  // on a listening socket, only updates its backlog
}

}  // namespace optiq::server
