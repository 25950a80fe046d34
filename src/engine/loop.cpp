#include "engine/loop.hpp"

#include "core/error.hpp"

#include <pthread.h>
#include <signal.h>

namespace openace::engine {

Loop::Loop()
{
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_, &Loop::on_async);
    async_.data = this;
    thread_ = std::thread([this] {
        // A write to a socket whose peer has gone raises SIGPIPE in the
        // writing thread, and its default action ends the process: block it
        // here (the write then fails with EPIPE), so that embedding the
        // engine never needs a process-wide signal setting.  libuv's thread
        // pool, started from this thread, inherits the mask.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
        uv_run(&loop_, UV_RUN_DEFAULT);
    });
}

Loop::~Loop()
{
    if (!joined_)
        stop(nullptr);
    uv_loop_close(&loop_);
}

void Loop::throw_stopped()
{
    throw_error(Errc::SHUTDOWN, "engine", "call", "the engine is shut down");
}

bool Loop::post(std::function<void()> fn)
{
    {
        std::lock_guard lk(mu_);
        if (stopping_)
            return false;
        queue_.push_back(std::move(fn));
    }
    uv_async_send(&async_);
    return true;
}

void Loop::on_async(uv_async_t *h)
{
    static_cast<Loop *>(h->data)->drain();
}

void Loop::drain()
{
    // Swap under the lock, run outside it: closures may post more work.
    for (;;) {
        std::vector<std::function<void()>> batch;
        {
            std::lock_guard lk(mu_);
            batch.swap(queue_);
        }
        if (batch.empty())
            return;
        for (auto &fn : batch) {
            try {
                fn();
            } catch (...) {
                // A closure must never take the loop down; callers that care
                // about errors use call(), which carries them in a future.
            }
        }
    }
}

void Loop::stop(std::function<void()> last)
{
    if (joined_)
        return;
    {
        std::lock_guard lk(mu_);
        // The final closure goes in the queue before we refuse new posts, so
        // it runs after everything already posted.
        queue_.push_back([this, last = std::move(last)] {
            if (last)
                last();
            drain();
            uv_close(reinterpret_cast<uv_handle_t *>(&async_), nullptr);
        });
        stopping_ = true;
    }
    uv_async_send(&async_);
    if (thread_.joinable())
        thread_.join();
    joined_ = true;
}

} // namespace openace::engine
