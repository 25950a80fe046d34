// RAII over libuv handles, the uvw way (STYLE.md).
//
// libuv may touch a handle until its close callback has run, so handle memory
// is never freed by a destructor: it is heap-allocated and deleted inside the
// close callback.  The owner object may therefore go away as soon as it has
// called close(); whatever must outlive the handle (write requests that point
// at the owner, counters of open handles) is the owner's business, usually by
// doing its own cleanup in the `on_closed` continuation.
//
// Loop thread only.  Nothing here throws out of a libuv callback.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <type_traits>
#include <utility>

namespace openace::net {

// "address already in use" for UV_EADDRINUSE; the text libuv itself uses.
inline std::string uv_error(int rc)
{
    return uv_strerror(rc);
}

// Closes a handle allocated with `new T` and deletes it from the close
// callback; `then` (optional) runs afterwards.  h->data is taken over for
// this, so no callback of the handle may read it once close has been asked.
// Safe to call on a handle that is already closing (then it does nothing and
// `then` is dropped), never on one that was not initialized.
template <class T> void close_and_delete(T *h, std::function<void()> then = {})
{
    auto *uh = reinterpret_cast<uv_handle_t *>(h);
    if (uv_is_closing(uh))
        return;
    uh->data = then ? new std::function<void()>(std::move(then)) : nullptr;
    uv_close(uh, [](uv_handle_t *closed) {
        auto *fn = static_cast<std::function<void()> *>(closed->data);
        delete reinterpret_cast<T *>(closed);
        if (fn) {
            try {
                (*fn)();
            } catch (...) {
                // a close continuation must not unwind through libuv
            }
            delete fn;
        }
    });
}

// Runs `fn` on the loop thread at the next loop iteration (from an idle
// handle that then closes itself), e.g. to destroy an object one of whose
// methods is still on the stack.  Loop thread only.  The idle handle keeps
// the loop running until it has run.
inline void run_soon(uv_loop_t *loop, std::function<void()> fn)
{
    auto *idle = new uv_idle_t{};
    uv_idle_init(loop, idle);
    idle->data = new std::function<void()>(std::move(fn));
    uv_idle_start(idle, [](uv_idle_t *h) {
        auto *f = static_cast<std::function<void()> *>(h->data);
        h->data = nullptr;
        close_and_delete(h);
        try {
            (*f)();
        } catch (...) {
            // never unwind through libuv
        }
        delete f;
    });
}

// Owns one heap-allocated libuv handle of type T (uv_tcp_t, uv_timer_t, …).
// Cannot be copied or moved: libuv and the owner keep raw pointers to it.
//
//   UvHandle<uv_timer_t> timer;
//   if (int rc = timer.init(this, uv_timer_init, loop)) …   // data = this
//   uv_timer_start(timer.get(), cb, 100, 0);
//   timer.close([this] { --open_handles_; });               // or just let it go out of scope
//
// Destroying an initialized UvHandle closes it with no continuation.
template <class T> class UvHandle {
public:
    UvHandle() = default;
    ~UvHandle() { close(); }
    UvHandle(const UvHandle &) = delete;
    UvHandle &operator=(const UvHandle &) = delete;
    UvHandle(UvHandle &&) = delete;
    UvHandle &operator=(UvHandle &&) = delete;

    // Allocates the handle and runs init_fn(loop, handle, args...), e.g.
    // uv_tcp_init or uv_timer_init.  Sets handle->data = owner.  Returns the
    // libuv status; on failure nothing stays allocated.  A handle already
    // held is closed first.
    template <class InitFn, class... A> int init(void *owner, InitFn init_fn, uv_loop_t *loop, A &&...args)
    {
        close();
        T *h = new T{};
        int rc = init_fn(loop, h, std::forward<A>(args)...);
        if (rc != 0) {
            delete h; // libuv did not register a handle that failed to init
            return rc;
        }
        h->data = owner;
        h_ = h;
        return 0;
    }

    T *get() const noexcept { return h_; }
    T *operator->() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }
    uv_handle_t *handle() const noexcept { return reinterpret_cast<uv_handle_t *>(h_); }
    uv_stream_t *stream() const noexcept
    {
        static_assert(std::is_same_v<T, uv_tcp_t> || std::is_same_v<T, uv_pipe_t> || std::is_same_v<T, uv_tty_t>,
                      "stream() needs a stream handle");
        return reinterpret_cast<uv_stream_t *>(h_);
    }

    // Asks libuv to close the handle; the memory is freed from the close
    // callback, then on_closed runs (on the loop thread, in a later loop
    // iteration).  Idempotent: without a handle, nothing happens and
    // on_closed is dropped.  After this get() returns nullptr.
    void close(std::function<void()> on_closed = {})
    {
        if (!h_)
            return;
        T *h = h_;
        h_ = nullptr;
        close_and_delete(h, std::move(on_closed));
    }

private:
    T *h_ = nullptr;
};

} // namespace openace::net
