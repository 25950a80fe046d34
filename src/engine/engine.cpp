// openace::Engine: the C++ facade over the loop thread and EngineManager.
#include <openace/engine.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/log_query.hpp"
#include "core/process_stats.hpp"
#include "engine/engine_manager.hpp"
#include "engine/event_queue.hpp"
#include "engine/loop.hpp"
#include "engine/main_engine.hpp"
#include "live/live_engine.hpp"
#include "media/segmenter_engine.hpp"
#include "streamer/streamer_engine.hpp"
#include "transport/transport_engine.hpp"

#include <atomic>
#include <chrono>
#include <mutex>

namespace openace {

const char *version_string() noexcept
{
#define OPENACE__STR2(x) #x
#define OPENACE__STR(x) OPENACE__STR2(x)
    return OPENACE__STR(OPENACE_VERSION_MAJOR) "." OPENACE__STR(OPENACE_VERSION_MINOR) "." OPENACE__STR(
        OPENACE_VERSION_PATCH);
#undef OPENACE__STR
#undef OPENACE__STR2
}

namespace {

core::Log::Options log_options(const core::Config &c)
{
    core::Log::Options o;
    o.level = core::parse_log_level(c.engine.log_level).value_or(core::LogLevel::Info);
    o.max_entries = size_t(c.logging.max_entries);
    o.max_memory_bytes = size_t(c.logging.max_memory_mb) << 20;
    return o;
}

} // namespace

struct Engine::Impl {
    core::Config config;
    core::Log log;
    engine::EventQueue events;
    core::ProcessSampler sampler;
    engine::EngineContext ctx;
    std::unique_ptr<engine::EngineManager> manager;
    streamer::StreamerEngine *streamer = nullptr;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::mutex shutdown_mu;
    std::atomic<bool> shut{false};
    // Last member: the loop thread starts in its constructor and must see
    // everything above constructed (and is joined before they are destroyed).
    engine::Loop loop;

    explicit Impl(core::Config cfg)
        : config(std::move(cfg)), log(log_options(config)),
          events(size_t(std::max(4, config.engine.event_queue_size)))
    {
        setup_log_sinks();
        ctx.loop = loop.uv();
        ctx.log = &log;
        ctx.config = &config;
        ctx.stats = [this] { return stats(); };
        try {
            loop.call([this] { start_engines(); });
        } catch (...) {
            shutdown();
            throw;
        }
    }

    void setup_log_sinks()
    {
        const auto &l = config.logging;
        bool json = l.format == "json";
        if (l.console)
            log.add_sink(core::make_console_sink(stderr, json));
        if (!l.file.empty())
            log.add_sink(core::make_rotating_file_sink(l.file, size_t(l.file_max_mb) << 20,
                                                       unsigned(l.file_count), json));
        auto ev_level = core::parse_log_level(l.event_level).value_or(core::LogLevel::Off);
        if (ev_level != core::LogLevel::Off) {
            log.set_listener([this, ev_level](const core::LogEntry &e) {
                if (e.level < ev_level)
                    return;
                Event ev;
                ev.id = OPENACE_EVENT_LOG;
                ev.job_id = e.job_id;
                ev.json = core::to_json(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
                events.push(std::move(ev), engine::EventClass::Droppable);
            });
        }
    }

    void start_engines()
    {
        manager = std::make_unique<engine::EngineManager>(ctx, events);
        ctx.manager = manager.get();
        manager->add(std::make_unique<engine::MainEngine>(ctx));
        manager->add(std::make_unique<media::SegmenterEngine>(ctx));
        manager->add(std::make_unique<transport::TransportEngine>(ctx));
        manager->add(std::make_unique<live::LiveEngine>(ctx));
        auto s = std::make_unique<streamer::StreamerEngine>(ctx);
        streamer = s.get();
        manager->add(std::move(s));
        manager->start_all();
        core::Logger(log, "engine")
            .info("OpenAce {} started: HTTP API on {}, P2P port {}", version_string(),
                  streamer->address(), config.transport.listen_port);
    }

    nlohmann::json stats()
    {
        auto ev = events.stats();
        return {
            {"version", version_string()},
            {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count()},
            {"engines", manager->stats_json()},
            {"jobs", manager->jobs().stats_json()},
            {"events",
             {{"queued", ev.queued}, {"reserved", ev.reserved}, {"capacity", ev.capacity},
              {"pushed", ev.pushed}, {"dropped", ev.dropped}}},
            {"log", core::to_json(log.stats())},
            {"process", core::to_json(sampler.sample())},
            {"http", streamer ? streamer->http_stats() : nlohmann::json(nullptr)},
        };
    }

    void check_alive() const
    {
        if (shut.load())
            throw_error(Errc::SHUTDOWN, "engine", "call", "the engine is shut down");
    }

    void shutdown()
    {
        std::lock_guard lk(shutdown_mu);
        if (shut.exchange(true))
            return;
        loop.stop([this] {
            if (manager)
                manager->stop_all([] {});
        });
        // The loop thread is joined: tear down engines off the loop.
        manager.reset();
        log.flush();
        Event ev;
        ev.id = OPENACE_EVENT_SHUTDOWN;
        events.push(std::move(ev), engine::EventClass::Normal);
        events.close();
    }
};

Engine::Engine(std::string_view config)
{
    core::Config cfg = config.empty() ? core::default_config() : core::parse_config(config, "config");
    impl_ = std::make_unique<Impl>(std::move(cfg));
}

Engine::~Engine()
{
    if (impl_)
        impl_->shutdown();
}

int64_t Engine::submit_job(std::string_view job_json)
{
    impl_->check_alive();
    return impl_->loop.call([&] { return impl_->manager->jobs().submit(job_json); });
}

void Engine::cancel_job(int64_t job_id)
{
    impl_->check_alive();
    impl_->loop.call([&] { impl_->manager->jobs().cancel(job_id); });
}

std::optional<Event> Engine::wait_event(double timeout_s)
{
    return impl_->events.pop(timeout_s);
}

void Engine::set_wakeup_callback(std::function<void()> cb)
{
    impl_->events.set_wakeup(std::move(cb));
}

int Engine::wakeup_fd() const
{
    return impl_->events.fd();
}

std::string Engine::stats_json() const
{
    impl_->check_alive();
    return impl_->loop.call([&] { return impl_->stats().dump(); });
}

std::string Engine::logs_json(std::string_view filter_json) const
{
    nlohmann::json f;
    if (!filter_json.empty()) {
        try {
            f = nlohmann::json::parse(filter_json);
        } catch (const nlohmann::json::parse_error &e) {
            throw_errorf(Errc::PARSE, "log", "filter", "filter is not valid JSON (at byte {})", e.byte);
        }
    }
    // The log is thread-safe: no hop to the loop needed.
    return core::query_logs(impl_->log, core::parse_log_filter(f)).dump();
}

std::string Engine::http_address() const
{
    impl_->check_alive();
    return impl_->loop.call([&] { return impl_->streamer->address(); });
}

void Engine::control(std::string_view engine, std::string_view action)
{
    impl_->check_alive();
    std::promise<void> done;
    auto fut = done.get_future();
    std::string e(engine), a(action);
    if (!impl_->loop.post([&, e, a] {
            impl_->manager->control(e, a, [&done](std::exception_ptr err) {
                if (err)
                    done.set_exception(err);
                else
                    done.set_value();
            });
        }))
        throw_error(Errc::SHUTDOWN, "engine", "control", "the engine is shut down");
    fut.get();
}

void Engine::shutdown()
{
    impl_->shutdown();
}

} // namespace openace
