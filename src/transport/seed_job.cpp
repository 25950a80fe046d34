#include "transport/seed_job.hpp"

#include "core/error.hpp"
#include "engine/job_fields.hpp"
#include "engine/job_queue.hpp"
#include "net/uv_handle.hpp"
#include "transport/storage.hpp"
#include "transport/torrent.hpp"
#include "transport/torrent_builder.hpp"
#include "transport/transport_engine.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace openace::transport {

namespace {

using engine::fields::bad;

} // namespace

// The hashing work on the thread pool.  Shared with the work request so a
// job cancelled mid-way leaves it safe to finish.
struct SeedJob::Build {
    uv_work_t req{};
    std::string path;
    std::vector<std::string> trackers;
    std::int64_t piece_length = 0;
    std::atomic<std::int64_t> done{0}, total{0};
    std::atomic<bool> cancel{false};
    std::vector<std::string> skipped; // worker thread until after_work
    BuiltTorrent result;
    std::exception_ptr error;
    std::weak_ptr<SeedJob> job;
    std::shared_ptr<Build> self; // keeps it alive while queued
};

void SeedJob::validate(const nlohmann::json &spec)
{
    for (auto it = spec.begin(); it != spec.end(); ++it) {
        const std::string &key = it.key();
        const auto &v = it.value();
        if (key == "type" || key == "priority")
            continue;
        if (key == "path" || key == "save_torrent") {
            if (!v.is_string() || v.get<std::string>().empty())
                bad(key, "expected a non-empty path");
        } else if (key == "trackers") {
            engine::fields::check_string_array(key, v, "tracker URLs");
        } else if (key == "piece_length") {
            if (!v.is_number_integer() || v.get<std::int64_t>() < 16384 || v.get<std::int64_t>() > (64 << 20) ||
                v.get<std::int64_t>() % 16384 != 0)
                bad(key, "expected a multiple of 16384 between 16 KiB and 64 MiB");
        } else {
            bad(key, "unknown field for a seed job");
        }
    }
    if (!spec.contains("path"))
        bad("path", "required: the file or directory to seed");
}

SeedJob::SeedJob(TransportEngine &engine, engine::JobPtr job) : engine_(engine), job_(std::move(job)) {}

SeedJob::~SeedJob()
{
    detach();
}

void SeedJob::detach()
{
    if (build_)
        build_->cancel = true;
    if (tick_) {
        net::close_and_delete(tick_);
        tick_ = nullptr;
    }
    if (torrent_) {
        torrent_ = nullptr;
        engine_.release(ih_);
    }
}

void SeedJob::start()
{
    const auto &spec = job_->spec;
    auto b = std::make_shared<Build>();
    b->path = spec["path"].get<std::string>();
    if (spec.contains("trackers"))
        for (const auto &t : spec["trackers"])
            b->trackers.push_back(t.get<std::string>());
    for (const auto &t : engine_.context().config->transport.trackers)
        b->trackers.push_back(t);
    if (b->trackers.empty() && !engine_.embedded_tracker_url().empty())
        b->trackers.push_back(engine_.embedded_tracker_url());
    b->piece_length = spec.value("piece_length", std::int64_t{0});
    b->job = weak_from_this();
    b->self = b;
    b->req.data = b.get();
    build_ = b;

    int rc = uv_queue_work(
        engine_.context().loop, &b->req,
        [](uv_work_t *req) {
            auto *w = static_cast<Build *>(req->data);
            try {
                w->result = build_torrent_from_path(
                    w->path, w->trackers, w->piece_length,
                    [w](std::int64_t done, std::int64_t total) {
                        w->done = done;
                        w->total = total;
                        return !w->cancel.load();
                    },
                    [w](const std::string &p, const std::string &why) {
                        if (w->skipped.size() < 100)
                            w->skipped.push_back(p + ": " + why);
                    });
            } catch (...) {
                w->error = std::current_exception();
            }
        },
        [](uv_work_t *req, int) {
            auto *w = static_cast<Build *>(req->data);
            auto keep = std::move(w->self);
            if (auto job = w->job.lock())
                job->built(*w);
        });
    if (rc != 0) {
        b->self.reset();
        throw_errorf(Errc::INTERNAL, "seed", "hash", "cannot queue the hashing work: {}", uv_strerror(rc));
    }

    tick_ = new uv_timer_t{};
    uv_timer_init(engine_.context().loop, tick_);
    tick_->data = this;
    uv_timer_start(tick_, on_tick, 1000, 1000);
    std::weak_ptr<SeedJob> weak = weak_from_this();
    job_->on_cancel = [weak] {
        if (auto self = weak.lock())
            self->cancel();
    };
    engine_.manager_jobs().progress(job_, {{"state", "hashing"}, {"path", b->path}});
}

void SeedJob::built(Build &b)
{
    build_.reset();
    if (ended_)
        return;
    if (b.error) {
        try {
            std::rethrow_exception(b.error);
        } catch (const Error &e) {
            fail(e);
        } catch (const std::exception &e) {
            fail(Error(Errc::IO, "seed", "hash", e.what()));
        }
        return;
    }
    for (const auto &s : b.skipped)
        engine_.context().log.warn("seed: skipped {}", s);
    const auto &spec = job_->spec;
    if (spec.contains("save_torrent")) {
        const std::string out = spec["save_torrent"].get<std::string>();
        std::ofstream f(out, std::ios::binary | std::ios::trunc);
        f.write(b.result.torrent.data(), static_cast<std::streamsize>(b.result.torrent.size()));
        if (!f) {
            fail(Error(Errc::IO, "seed", "save", fmt::format("cannot write '{}': {}", out, std::strerror(errno))));
            return;
        }
    }
    Metainfo m = b.result.metainfo;
    ih_ = m.infohash;
    magnet_ = to_magnet(ih_, m.name, m.trackers());
    Torrent &t = engine_.acquire(ih_, m.name);
    torrent_ = &t;
    t.add_trackers(m.trackers());
    if (!t.has_metadata()) {
        auto storage = make_file_storage(engine_.context().loop, m, b.result.root);
        t.set_metadata(std::move(m), std::move(storage), true);
    }
    std::vector<PeerAddress> peers;
    for (const auto &p : engine_.context().config->transport.peers)
        peers.push_back(parse_peer_address(p));
    t.add_peers(peers, true);
    t.start();
    report();
}

void SeedJob::on_tick(uv_timer_t *t)
{
    static_cast<SeedJob *>(t->data)->report();
}

void SeedJob::report()
{
    if (ended_)
        return;
    nlohmann::json j;
    if (!torrent_) {
        j["state"] = "hashing";
        if (build_) {
            std::int64_t done = build_->done, total = build_->total;
            j["hashed"] = done;
            j["size"] = total;
            j["percent"] = total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 0.0;
        }
    } else {
        j = torrent_->status();
        j.erase("picker");
        j["state"] = "seeding";
        j["magnet"] = magnet_;
        j["listen_port"] = engine_.listen_port();
    }
    engine_.manager_jobs().progress(job_, std::move(j));
}

void SeedJob::cancel()
{
    if (ended_)
        return;
    ended_ = true;
    auto self = shared_from_this();
    detach();
    engine_.manager_jobs().cancelled(job_);
    engine_.job_ended(job_->id);
}

void SeedJob::fail(const Error &e)
{
    if (ended_)
        return;
    ended_ = true;
    auto self = shared_from_this();
    detach();
    engine_.manager_jobs().fail(job_, e);
    engine_.job_ended(job_->id);
}

} // namespace openace::transport
