// An output file or standard output written from the loop thread without
// blocking it: writes go to the libuv thread pool one at a time, in order,
// short writes (pipes) are completed.  Used by jobs that stream to a file
// or to "-".
//
// Loop thread only.  Destroying the writer drops what is still queued; a
// write in flight finishes on the pool and its callback then does nothing.
#pragma once

#include "net/uv_handle.hpp"

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

namespace openace::net {

class FileWriter {
public:
    // path "-" is standard output (not closed); otherwise the file is
    // created or truncated.  Throws Error(IO, component, "output",
    // "cannot write '<path>': <why>").
    FileWriter(uv_loop_t *loop, const std::string &path, const char *component);
    ~FileWriter();
    FileWriter(const FileWriter &) = delete;
    FileWriter &operator=(const FileWriter &) = delete;

    void write(std::string data);
    // Bytes queued and not yet written.
    std::size_t queued() const noexcept;
    std::uint64_t written() const noexcept;
    // The first write error ("<path>: <why>"); nothing is written after it.
    // A full non-blocking pipe (EAGAIN) is not an error: the write is
    // retried.  The handler may destroy the writer.
    std::function<void(const std::string &error)> on_error;

private:
    struct State;
    void next();
    void retry_later(); // EAGAIN: next() again in a few milliseconds
    std::shared_ptr<State> st_;
    net::UvHandle<uv_timer_t> retry_; // EAGAIN retries
};

} // namespace openace::net
