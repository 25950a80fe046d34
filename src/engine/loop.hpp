// The engine's loop thread (DESIGN §3): one libuv loop owns every socket,
// timer and session.  Other threads post closures to it; the whole queue is
// drained on each wakeup, so uv_async_send coalescing loses nothing.
#pragma once

#include <uv.h>

#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace openace::engine {

class Loop {
public:
    Loop();
    ~Loop(); // joins the thread if stop() was not called
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;

    uv_loop_t *uv() noexcept { return &loop_; }
    bool on_loop_thread() const noexcept { return std::this_thread::get_id() == thread_.get_id(); }

    // Runs fn on the loop thread.  Returns false (and drops fn) once the
    // loop has been told to stop.  Never blocks on the loop.
    bool post(std::function<void()> fn);

    // Runs fn on the loop thread and waits for its result (exceptions are
    // rethrown here).  Runs fn directly when called on the loop thread.
    template <class F> auto call(F &&fn) -> std::invoke_result_t<F>
    {
        using R = std::invoke_result_t<F>;
        if (on_loop_thread())
            return fn();
        std::packaged_task<R()> task(std::forward<F>(fn));
        auto fut = task.get_future();
        if (!post([&task] { task(); }))
            throw_stopped();
        return fut.get();
    }

    // Stops accepting posts, runs `last` on the loop thread (it must close
    // every handle it owns), then lets the loop run until no handle is left
    // and joins the thread.  Blocking; call from outside the loop thread.
    void stop(std::function<void()> last);

private:
    [[noreturn]] static void throw_stopped();
    static void on_async(uv_async_t *h);
    void drain();

    uv_loop_t loop_{};
    uv_async_t async_{};
    std::mutex mu_;
    std::vector<std::function<void()>> queue_;
    bool stopping_ = false;
    bool joined_ = false;
    std::thread thread_;
};

} // namespace openace::engine
