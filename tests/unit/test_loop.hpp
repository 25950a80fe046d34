// A libuv loop for one unit test: run it until a condition holds (bounded
// in time); whatever is left open is closed when the test ends.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

struct TestLoop {
    uv_loop_t loop{};
    TestLoop() { uv_loop_init(&loop); }
    ~TestLoop()
    {
        uv_walk(&loop, [](uv_handle_t *h, void *) {
            if (!uv_is_closing(h))
                uv_close(h, nullptr);
        }, nullptr);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }

    // Runs the loop until pred() holds or `limit` passed; returns pred().
    bool run_until(const std::function<bool()> &pred, std::chrono::milliseconds limit)
    {
        struct Ctx {
            const std::function<bool()> *pred;
            std::chrono::steady_clock::time_point deadline;
        } ctx{&pred, std::chrono::steady_clock::now() + limit};
        uv_timer_t tick;
        uv_timer_init(&loop, &tick);
        tick.data = &ctx;
        uv_timer_start(&tick, [](uv_timer_t *t) {
            auto *c = static_cast<Ctx *>(t->data);
            if ((*c->pred)() || std::chrono::steady_clock::now() >= c->deadline)
                uv_stop(t->loop);
        }, 1, 2);
        if (!pred())
            uv_run(&loop, UV_RUN_DEFAULT);
        uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
        uv_run(&loop, UV_RUN_NOWAIT);
        return pred();
    }
    void run_for(std::chrono::milliseconds d)
    {
        run_until([] { return false; }, d);
    }
};

