// The job queue and EngineManager on a real libuv loop, with engines defined
// here: a "hold" job that ends only when the test says so, and an engine
// whose start can be made to fail.
#include "core/config.hpp"
#include "core/log.hpp"
#include "engine/engine_manager.hpp"
#include "engine/event_queue.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>

using namespace openace;
using namespace openace::engine;

namespace {

class HoldEngine : public SubEngine {
public:
    HoldEngine(EngineContext &ctx, std::string name, std::vector<std::string> deps, bool jobs)
        : SubEngine(ctx, std::move(name), std::move(deps)), owns_(jobs) {}
    bool owns_job(std::string_view t) const override { return owns_ && t == "hold"; }
    void validate_job(const nlohmann::json &spec) const override
    {
        for (auto &[k, v] : spec.items())
            if (k != "type" && k != "priority" && k != "label")
                throw Error(Errc::JOB, "job", "validate", "field '" + k + "': unknown field");
    }
    void run_job(const JobPtr &job) override
    {
        started.push_back(job->spec.value("label", ""));
        held[job->id] = job;
        job->on_cancel = [this, job] {
            held.erase(job->id);
            ctx_.manager->jobs().cancelled(job);
        };
    }
    void release(int64_t id)
    {
        auto job = held.at(id);
        held.erase(id);
        ctx_.manager->jobs().finish(job, {{"ok", true}});
    }
    bool fail_start = false;
    std::vector<std::string> started;
    std::map<int64_t, JobPtr> held;

protected:
    void on_start() override
    {
        if (fail_start)
            throw Error(Errc::NET, name(), "start", "port 1 is not ours");
    }

private:
    bool owns_;
};

struct Fixture {
    uv_loop_t loop{};
    core::Config config = core::default_config();
    core::Log log;
    EventQueue events{64};
    EngineContext ctx;
    std::unique_ptr<EngineManager> manager;
    HoldEngine *main = nullptr, *mid = nullptr, *top = nullptr;

    explicit Fixture(int max_active = 1)
    {
        uv_loop_init(&loop);
        config.engine.max_active_jobs = max_active;
        ctx.loop = &loop;
        ctx.log = &log;
        ctx.config = &config;
        manager = std::make_unique<EngineManager>(ctx, events);
        ctx.manager = manager.get();
        auto a = std::make_unique<HoldEngine>(ctx, "main", std::vector<std::string>{}, true);
        auto b = std::make_unique<HoldEngine>(ctx, "mid", std::vector<std::string>{"main"}, false);
        auto c = std::make_unique<HoldEngine>(ctx, "top", std::vector<std::string>{"mid"}, false);
        main = a.get();
        mid = b.get();
        top = c.get();
        manager->add(std::move(a));
        manager->add(std::move(b));
        manager->add(std::move(c));
        manager->start_all();
    }
    ~Fixture()
    {
        bool stopped = false;
        manager->stop_all([&] { stopped = true; });
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(stopped);
        manager.reset();
        CHECK(uv_loop_close(&loop) == 0); // every handle closed
    }
    void spin() { uv_run(&loop, UV_RUN_NOWAIT); uv_run(&loop, UV_RUN_NOWAIT); }
    int64_t submit(const std::string &json) { return manager->jobs().submit(json); }
    // Final state of each job seen in the events so far.
    std::map<int64_t, std::string> finals()
    {
        std::map<int64_t, std::string> out;
        while (auto e = events.pop(0))
            if (e->id == OPENACE_EVENT_JOB_STATE && e->final)
                out[e->job_id] = nlohmann::json::parse(e->json)["state"];
        return out;
    }
    void control(const std::string &engine, const std::string &action)
    {
        std::exception_ptr err;
        bool done = false;
        manager->control(engine, action, [&](std::exception_ptr e) { err = e; done = true; });
        while (!done)
            uv_run(&loop, UV_RUN_ONCE);
        if (err)
            std::rethrow_exception(err);
    }
};

Errc submit_error(Fixture &f, const std::string &json, std::string *msg = nullptr)
{
    try {
        f.submit(json);
    } catch (const Error &e) {
        if (msg)
            *msg = e.what();
        return e.code();
    }
    return Errc::OK;
}

} // namespace

TEST_CASE("jobs: queued jobs start by priority, FIFO within a priority")
{
    Fixture f(1);
    auto low = f.submit(R"({"type":"hold","label":"low","priority":-5})");
    auto hi1 = f.submit(R"({"type":"hold","label":"hi1","priority":10})");
    auto mid = f.submit(R"({"type":"hold","label":"mid"})");
    auto hi2 = f.submit(R"({"type":"hold","label":"hi2","priority":10})");
    CHECK(f.main->started.empty()); // nothing starts inside submit
    f.spin();
    REQUIRE(f.main->started == std::vector<std::string>{"hi1"});
    for (auto id : {hi1, hi2, mid}) {
        f.main->release(id);
        f.spin();
    }
    CHECK(f.main->started == std::vector<std::string>{"hi1", "hi2", "mid", "low"});
    f.main->release(low);
    auto finals = f.finals();
    CHECK(finals.size() == 4);
    for (auto &[id, state] : finals)
        CHECK(state == "done");
}

TEST_CASE("jobs: every job emits queued, running and one final state event")
{
    Fixture f(4);
    auto id = f.submit(R"({"type":"hold"})");
    f.spin();
    f.main->release(id);
    std::vector<std::string> states;
    int finals = 0;
    while (auto e = f.events.pop(0)) {
        if (e->id != OPENACE_EVENT_JOB_STATE || e->job_id != id)
            continue;
        states.push_back(nlohmann::json::parse(e->json)["state"]);
        finals += e->final;
    }
    CHECK(states == std::vector<std::string>{"queued", "running", "done"});
    CHECK(finals == 1);
}

TEST_CASE("jobs: cancel works on queued and running jobs and reports ended ones")
{
    Fixture f(1);
    auto running = f.submit(R"({"type":"hold"})");
    auto queued = f.submit(R"({"type":"hold"})");
    f.spin();
    REQUIRE(f.main->held.count(running));
    f.manager->jobs().cancel(queued);
    f.manager->jobs().cancel(running);
    f.spin();
    auto finals = f.finals();
    CHECK(finals[queued] == "cancelled");
    CHECK(finals[running] == "cancelled");
    CHECK(f.main->started.size() == 1); // the queued one never ran
    try {
        f.manager->jobs().cancel(queued);
        FAIL("cancel of an ended job must throw");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::STATE);
    }
    try {
        f.manager->jobs().cancel(12345);
        FAIL("cancel of an unknown job must throw");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::NOTFOUND);
    }
}

TEST_CASE("jobs: a paused engine starts no job until resumed")
{
    Fixture f(4);
    f.control("main", "pause");
    auto id = f.submit(R"({"type":"hold"})");
    f.spin();
    CHECK(f.main->started.empty());
    f.control("main", "resume");
    f.spin();
    CHECK(f.main->started.size() == 1);
    f.main->release(id);
}

TEST_CASE("jobs: bad jobs are refused with the field named")
{
    Fixture f;
    std::string msg;
    CHECK(submit_error(f, "{not json", &msg) == Errc::PARSE);
    CHECK(submit_error(f, "[1,2]", &msg) == Errc::JOB);
    CHECK(msg.find("object") != std::string::npos);
    CHECK(submit_error(f, R"({"priority":1})", &msg) == Errc::JOB);
    CHECK(msg.find("'type'") != std::string::npos);
    CHECK(submit_error(f, R"({"type":"fly"})", &msg) == Errc::JOB);
    CHECK(msg.find("'fly'") != std::string::npos);
    CHECK(submit_error(f, R"({"type":"hold","priority":"high"})", &msg) == Errc::JOB);
    CHECK(msg.find("'priority'") != std::string::npos);
    CHECK(submit_error(f, R"({"type":"hold","colour":1})", &msg) == Errc::JOB);
    CHECK(msg.find("'colour'") != std::string::npos);
    CHECK(f.manager->jobs().stats_json()["rejected"] == 6);
    CHECK(f.events.stats().reserved == 0); // refused jobs hold no event slot
}

TEST_CASE("jobs: submit refuses with BUSY when final events cannot be reserved")
{
    Fixture f(1);
    // Nobody reads events: reservations and queued events fill the queue.
    int accepted = 0;
    Errc last = Errc::OK;
    for (int i = 0; i < 200 && last == Errc::OK; ++i) {
        last = submit_error(f, R"({"type":"hold"})");
        accepted += last == Errc::OK;
    }
    CHECK(last == Errc::BUSY);
    CHECK(accepted > 0);
    CHECK(accepted <= 64);
}

TEST_CASE("manager: stop cascades to dependents, start brings dependencies up")
{
    Fixture f;
    f.control("mid", "stop");
    CHECK(f.mid->state() == EngineState::Stopped);
    CHECK(f.top->state() == EngineState::Stopped);
    CHECK(f.main->state() == EngineState::Running);
    f.control("main", "stop");
    f.control("top", "start");
    CHECK(f.main->running());
    CHECK(f.mid->running());
    CHECK(f.top->running());
}

TEST_CASE("manager: restart touches only the named engine")
{
    Fixture f;
    auto before = f.top->stats_json()["uptime_ms"].get<int64_t>();
    std::vector<std::string> changes;
    while (f.events.pop(0)) {
    }
    f.control("mid", "restart");
    while (auto e = f.events.pop(0))
        if (e->id == OPENACE_EVENT_ENGINE_STATE) {
            auto j = nlohmann::json::parse(e->json);
            changes.push_back(j["engine"].get<std::string>() + ":" + j["state"].get<std::string>());
        }
    CHECK(f.mid->running());
    CHECK(f.top->running());
    CHECK(f.top->stats_json()["uptime_ms"].get<int64_t>() >= before);
    for (auto &c : changes)
        CHECK(c.rfind("mid:", 0) == 0);
    CHECK(std::find(changes.begin(), changes.end(), "mid:stopped") != changes.end());
    CHECK(std::find(changes.begin(), changes.end(), "mid:running") != changes.end());
}

TEST_CASE("manager: a failing start leaves the engine in Error with the reason")
{
    Fixture f;
    f.control("top", "stop");
    f.top->fail_start = true;
    try {
        f.control("top", "start");
        FAIL("start must fail");
    } catch (const Error &e) {
        CHECK(e.code() == Errc::NET);
        CHECK(e.component() == "top");
    }
    CHECK(f.top->state() == EngineState::Error);
    CHECK(f.top->reason() == "port 1 is not ours");
    CHECK(f.top->stats_json()["health"] == "critical");
    f.top->fail_start = false;
    f.control("top", "start");
    CHECK(f.top->running());
}

TEST_CASE("manager: unknown engines and actions are errors")
{
    Fixture f;
    CHECK_THROWS_AS(f.control("nope", "start"), Error);
    CHECK_THROWS_AS(f.control("main", "explode"), Error);
    f.control("top", "stop");
    CHECK_THROWS_AS(f.control("top", "pause"), Error);
}

TEST_CASE("engine statistics count each job as an operation of its engine")
{
    Fixture f(2);
    auto a = f.submit(R"({"type":"hold"})");
    auto b = f.submit(R"({"type":"hold"})");
    f.spin();
    f.main->release(a);
    f.manager->jobs().fail(f.main->held.at(b),
                           Error(Errc::MEDIA, "main", "hold", "the test said so"));
    auto s = f.main->stats_json();
    CHECK(s["state"] == "running");
    CHECK(s["operations"]["total"] == 2);
    CHECK(s["operations"]["successful"] == 1);
    CHECK(s["operations"]["failed"] == 1);
    CHECK(s["health"] == "critical"); // 50 % failed
    CHECK(s["uptime_ms"].get<int64_t>() >= 0);
}
