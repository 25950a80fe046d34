#include "transport/play_job.hpp"

#include "core/error.hpp"
#include "core/file_read.hpp"
#include "engine/job_fields.hpp"
#include "core/hex.hpp"
#include "engine/engine_manager.hpp"
#include "net/uv_handle.hpp"
#include "transport/swarm_job_fields.hpp"
#include "transport/torrent.hpp"
#include "transport/transport_engine.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace openace::transport {

namespace {

constexpr std::size_t kReadSize = 256 * 1024;
constexpr std::size_t kMaxTorrentFile = 16 << 20;

using engine::fields::bad;

bool parse_hex_infohash(const std::string &s, InfoHash &out)
{
    auto h = core::from_hex<20>(s);
    if (h)
        out = *h;
    return h.has_value();
}

std::string read_torrent_file(const std::string &path)
{
    std::string data;
    const core::FileRead r = core::read_file(path, kMaxTorrentFile, data);
    if (r.status == core::FileRead::Status::Unreadable)
        throw_errorf(Errc::IO, "play", "read", "cannot read '{}': {}", path, r.error);
    if (r.status == core::FileRead::Status::TooLarge)
        throw_errorf(Errc::INVAL, "play", "read", "'{}' is larger than {} bytes: not a .torrent", path, kMaxTorrentFile);
    return data;
}

// What a play job's source names: an infohash, maybe metadata, trackers and peers.
struct Source {
    InfoHash ih{};
    std::optional<Metainfo> meta;
    std::vector<std::string> trackers;
    std::vector<PeerAddress> peers;
    std::string name;
};

Source resolve(const nlohmann::json &spec)
{
    Source s;
    if (spec.contains("infohash")) {
        parse_hex_infohash(spec["infohash"].get<std::string>(), s.ih);
    } else if (spec.contains("magnet")) {
        Magnet m = parse_magnet(spec["magnet"].get<std::string>());
        s.ih = m.infohash;
        s.trackers = m.trackers;
        s.name = m.name;
        for (const auto &p : m.peers) {
            try {
                s.peers.push_back(parse_peer_address(p));
            } catch (const Error &) {
                // x.pe with a host name: not supported, skipped
            }
        }
    } else {
        Metainfo m = parse_metainfo(read_torrent_file(spec["torrent"].get<std::string>()));
        s.ih = m.infohash;
        s.trackers = m.trackers();
        s.name = m.name;
        s.meta = std::move(m);
    }
    if (spec.contains("trackers"))
        for (const auto &t : spec["trackers"])
            s.trackers.push_back(t.get<std::string>());
    if (spec.contains("peers"))
        for (const auto &p : spec["peers"])
            s.peers.push_back(parse_peer_address(p.get<std::string>()));
    return s;
}

} // namespace

struct PlayJob::Output {
    int fd = -1;
    bool owned = false;
    ~Output()
    {
        if (owned && fd >= 0)
            ::close(fd);
    }
};

void PlayJob::validate(const nlohmann::json &spec)
{
    int sources = 0;
    for (auto it = spec.begin(); it != spec.end(); ++it) {
        const std::string &key = it.key();
        const auto &v = it.value();
        if (key == "type" || key == "priority")
            continue;
        if (key == "infohash") {
            InfoHash ih;
            if (!v.is_string() || !parse_hex_infohash(v.get<std::string>(), ih))
                bad(key, "expected 40 hexadecimal digits");
            ++sources;
        } else if (key == "magnet") {
            if (!v.is_string())
                bad(key, fmt::format("expected a string, got {}", v.type_name()));
            try {
                parse_magnet(v.get<std::string>());
            } catch (const Error &e) {
                bad(key, e.detail());
            }
            ++sources;
        } else if (key == "torrent") {
            if (!v.is_string() || v.get<std::string>().empty())
                bad(key, "expected the path of a .torrent file");
            ++sources;
        } else if (key == "file_index") {
            if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
                bad(key, "expected an integer >= 0");
        } else if (key == "output") {
            if (!v.is_string() || v.get<std::string>().empty())
                bad(key, "expected a file path or \"-\" (standard output)");
        } else if (!fields::check_swarm_field(key, v)) {
            bad(key, "unknown field for a play job");
        }
    }
    if (sources != 1)
        throw_error(Errc::JOB, "job", "validate",
                    "a play job needs exactly one of 'infohash', 'magnet' or 'torrent'");
    if (!spec.contains("output"))
        bad("output", "required: a file path or \"-\" (standard output)");
}

PlayJob::PlayJob(TransportEngine &engine, engine::JobPtr job) : engine_(engine), job_(std::move(job)) {}

PlayJob::~PlayJob()
{
    detach();
}

void PlayJob::detach()
{
    if (tick_) {
        net::close_and_delete(tick_);
        tick_ = nullptr;
    }
    if (torrent_) {
        if (reader_)
            torrent_->close_reader(reader_);
        torrent_ = nullptr;
        reader_ = 0;
        engine_.release(ih_);
    }
}

void PlayJob::start()
{
    const auto &spec = job_->spec;
    Source src = resolve(spec);
    ih_ = src.ih;
    file_index_ = static_cast<int>(spec.value("file_index", std::int64_t{-1}));
    output_path_ = spec["output"].get<std::string>();
    out_ = std::make_shared<Output>();
    if (output_path_ == "-") {
        out_->fd = 1;
    } else {
        out_->fd = ::open(output_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_->fd < 0)
            throw_errorf(Errc::IO, "play", "output", "cannot write '{}': {}", output_path_, std::strerror(errno));
        out_->owned = true;
    }

    auto &cfg = engine_.context().config->transport;
    for (const auto &t : cfg.trackers)
        src.trackers.push_back(t);
    for (const auto &p : cfg.peers)
        src.peers.push_back(parse_peer_address(p));

    engine_.cache(); // where the pieces go; throws naming the directory
    Torrent &t = engine_.acquire(ih_, src.name);
    torrent_ = &t;
    t.add_trackers(src.trackers);
    if (src.meta && !t.has_metadata())
        t.set_metadata(std::move(*src.meta));
    t.add_peers(src.peers, true);
    std::weak_ptr<PlayJob> weak = weak_from_this();
    t.on_error = [weak](const std::string &error) {
        if (auto self = weak.lock())
            self->end(std::make_exception_ptr(Error(Errc::IO, "play", "storage", error)));
    };
    t.start();

    tick_ = new uv_timer_t{};
    uv_timer_init(engine_.context().loop, tick_);
    tick_->data = this;
    uv_timer_start(tick_, on_tick, 1000, 1000);
    job_->on_cancel = [weak] {
        if (auto self = weak.lock())
            self->cancel();
    };
    report();
    if (t.has_metadata())
        metadata_ready();
    else
        t.on_metadata = [weak] {
            if (auto self = weak.lock())
                self->metadata_ready();
        };
}

void PlayJob::metadata_ready()
{
    if (ended_ || reader_)
        return;
    const Metainfo &m = torrent_->metainfo();
    if (file_index_ < 0) { // the largest file
        file_index_ = 0;
        for (std::size_t i = 1; i < m.files.size(); ++i)
            if (m.files[i].length > m.files[static_cast<std::size_t>(file_index_)].length)
                file_index_ = static_cast<int>(i);
    }
    if (static_cast<std::size_t>(file_index_) >= m.files.size()) {
        end(std::make_exception_ptr(Error(Errc::JOB, "play", "file_index",
                                          fmt::format("file_index {} is out of range: the torrent has {} file(s)",
                                                      file_index_, m.files.size()))));
        return;
    }
    const auto &f = m.files[static_cast<std::size_t>(file_index_)];
    file_begin_ = f.offset;
    file_size_ = f.length;
    torrent_->set_wanted(f.offset, f.offset + f.length);
    reader_ = torrent_->open_reader(f.offset, f.offset + f.length);
    set_state("prebuffering");
    read_next();
}

void PlayJob::read_next()
{
    if (ended_ || reading_ || writing_)
        return;
    if (written_ >= file_size_) {
        end(nullptr);
        return;
    }
    reading_ = true;
    std::weak_ptr<PlayJob> weak = weak_from_this();
    torrent_->read(reader_, kReadSize, [weak](std::string data, const std::string &error) {
        auto self = weak.lock();
        if (!self || self->ended_)
            return;
        self->reading_ = false;
        if (!error.empty()) {
            self->end(std::make_exception_ptr(Error(Errc::IO, "play", "read", error)));
            return;
        }
        if (data.empty()) {
            self->end(nullptr);
            return;
        }
        self->write(std::move(data));
    });
}

void PlayJob::write(std::string data)
{
    struct Req {
        uv_fs_t fs{};
        std::string data;
        std::shared_ptr<Output> out;
        std::weak_ptr<PlayJob> job;
    };
    auto *r = new Req;
    r->data = std::move(data);
    r->out = out_;
    r->job = weak_from_this();
    r->fs.data = r;
    writing_ = true;
    uv_buf_t buf = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
    int rc = uv_fs_write(engine_.context().loop, &r->fs, out_->fd, &buf, 1, -1, [](uv_fs_t *fs) {
        auto *req = static_cast<Req *>(fs->data);
        const auto result = fs->result;
        const std::size_t want = req->data.size();
        uv_fs_req_cleanup(fs);
        auto job = req->job.lock();
        if (job && result >= 0 && static_cast<std::size_t>(result) < want) {
            // A short write (pipe): send the rest.
            std::string rest = req->data.substr(static_cast<std::size_t>(result));
            job->written_ += result;
            delete req;
            job->writing_ = false;
            job->write(std::move(rest));
            return;
        }
        delete req;
        if (job)
            job->written(want, result < 0 ? static_cast<int>(result) : 0);
    });
    if (rc != 0) {
        delete r;
        written(0, rc);
    }
}

void PlayJob::written(std::size_t n, int status)
{
    writing_ = false;
    if (ended_)
        return;
    if (status < 0) {
        end(std::make_exception_ptr(
            Error(Errc::IO, "play", "output", fmt::format("writing '{}': {}", output_path_, uv_strerror(status)))));
        return;
    }
    written_ += static_cast<std::int64_t>(n);
    if (first_byte_s_ < 0) {
        first_byte_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        set_state("playing");
    }
    read_next();
}

void PlayJob::on_tick(uv_timer_t *t)
{
    static_cast<PlayJob *>(t->data)->report();
}

void PlayJob::set_state(const char *s)
{
    state_ = s;
    report();
}

nlohmann::json PlayJob::status() const
{
    nlohmann::json j = torrent_ ? torrent_->status() : nlohmann::json::object();
    j.erase("picker");
    j["state"] = state_;
    j["written"] = written_;
    if (file_index_ >= 0 && reader_) {
        j["file_index"] = file_index_;
        j["size"] = file_size_;
        j["percent"] = file_size_ > 0 ? 100.0 * static_cast<double>(written_) / static_cast<double>(file_size_) : 100.0;
        j["buffer_bytes"] = torrent_->reader_buffered(reader_);
    }
    if (first_byte_s_ >= 0)
        j["first_byte_s"] = first_byte_s_;
    return j;
}

void PlayJob::report()
{
    if (ended_)
        return;
    engine_.manager_jobs().progress(job_, status());
}

void PlayJob::cancel()
{
    if (ended_)
        return;
    ended_ = true;
    auto self = shared_from_this();
    detach();
    engine_.manager_jobs().cancelled(job_);
    engine_.job_ended(job_->id);
}

void PlayJob::end(const std::exception_ptr &error)
{
    if (ended_)
        return;
    auto self = shared_from_this();
    if (!error) {
        state_ = "done";
        nlohmann::json result = status();
        result["output"] = output_path_;
        result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        engine_.manager_jobs().progress(job_, status());
        ended_ = true;
        engine_.manager_jobs().finish(job_, std::move(result));
    } else {
        ended_ = true;
        try {
            std::rethrow_exception(error);
        } catch (const Error &e) {
            engine_.manager_jobs().fail(job_, e);
        } catch (const std::exception &e) {
            engine_.manager_jobs().fail(job_, Error(Errc::INTERNAL, "play", "run", e.what()));
        }
    }
    detach();
    engine_.job_ended(job_->id);
}

} // namespace openace::transport
