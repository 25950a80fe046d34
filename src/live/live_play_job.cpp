#include "live/live_play_job.hpp"

#include "core/error.hpp"
#include "core/file_read.hpp"
#include "core/sha1.hpp"
#include "engine/job_fields.hpp"
#include "live/live_engine.hpp"
#include "net/file_writer.hpp"
#include "net/uv_handle.hpp"
#include "transport/swarm_job_fields.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace openace::live {

using engine::fields::bad;

namespace {

constexpr std::size_t kMaxLags = 10000;
constexpr std::size_t kMaxQueuedOutput = 64u << 20; // a reader this far behind fails the job
constexpr auto kLateTolerance = std::chrono::milliseconds(100);

std::int64_t unix_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string read_descriptor_file(const std::string &path)
{
    std::string data;
    const core::FileRead r = core::read_file(path, kMaxDescriptorBytes, data);
    if (r.status == core::FileRead::Status::Unreadable)
        throw_errorf(Errc::IO, "play", "descriptor", "cannot read '{}': {}", path, r.error);
    if (r.status == core::FileRead::Status::TooLarge)
        throw_errorf(Errc::PARSE, "play", "descriptor", "'{}' is {} bytes: not a live descriptor (at most {})", path,
                     r.size, kMaxDescriptorBytes);
    return data;
}

double percentile(std::vector<double> v, double q)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
}

} // namespace

void LivePlayJob::validate(const nlohmann::json &spec)
{
    int sources = 0;
    for (auto it = spec.begin(); it != spec.end(); ++it) {
        const std::string &key = it.key();
        const auto &v = it.value();
        if (key == "type" || key == "priority")
            continue;
        if (key == "content_id") {
            if (!v.is_string())
                bad(key, "expected 40 hexadecimal digits or an acestream:// link");
            try {
                parse_content_id(v.get<std::string>());
            } catch (const Error &e) {
                bad(key, e.detail());
            }
            ++sources;
        } else if (key == "descriptor") {
            if (!v.is_string() || v.get_ref<const std::string &>().empty())
                bad(key, "expected the path of a .acelive descriptor file");
            ++sources;
        } else if (key == "output") {
            if (!v.is_string() || v.get_ref<const std::string &>().empty())
                bad(key, "expected a file path or \"-\" (standard output)");
        } else if (!transport::fields::check_swarm_field(key, v)) {
            bad(key, "unknown field for a live play job (known: type, content_id, descriptor, output, trackers, "
                     "peers, priority)");
        }
    }
    if (sources != 1)
        bad("content_id", "give exactly one of content_id and descriptor");
    if (!spec.contains("output"))
        bad("output", "required: a file path or \"-\" (standard output)");
}

LivePlayJob::~LivePlayJob()
{
    release();
}

void LivePlayJob::release()
{
    if (swarm_ && subscription_) {
        swarm_->unsubscribe(subscription_);
        subscription_ = 0;
    }
}

void LivePlayJob::start()
{
    const auto &spec = job_->spec;
    const auto &cfg = engine_.config();
    std::string descriptor;
    if (spec.contains("descriptor")) {
        descriptor = read_descriptor_file(spec["descriptor"].get<std::string>());
        try {
            parse_descriptor(descriptor);
        } catch (const Error &e) {
            throw_errorf(Errc::PARSE, "play", "descriptor", "'{}': {}", spec["descriptor"].get<std::string>(),
                         e.detail());
        }
        id_ = core::Sha1::hash(descriptor);
    } else {
        id_ = parse_content_id(spec["content_id"].get<std::string>());
    }
    output_path_ = spec["output"].get<std::string>();
    out_ = std::make_unique<net::FileWriter>(engine_.loop(), output_path_, "play");
    std::weak_ptr<LivePlayJob> weak = weak_self<LivePlayJob>();
    out_->on_error = [weak](const std::string &error) {
        if (auto self = weak.lock())
            self->end(std::make_exception_ptr(Error(Errc::IO, "play", "output", "cannot write " + error)));
    };

    LiveSwarm &s = hold(id_);
    if (!descriptor.empty())
        s.set_descriptor(descriptor);
    std::vector<std::string> trackers = transport::fields::swarm_trackers(spec, cfg);
    s.add_trackers(trackers);
    const std::vector<transport::PeerAddress> peers = transport::fields::swarm_peers(spec, cfg);
    subscription_ = s.subscribe([weak](const LiveSwarm::PieceRef &piece, bool disc) {
        if (auto self = weak.lock())
            self->on_piece(piece, disc);
    });
    s.add_peers(peers, true);
    s.start();
    start_reporting();
}

void LivePlayJob::on_piece(const LiveSwarm::PieceRef &piece, bool discontinuity)
{
    if (ended_)
        return;
    const auto now = clock::now();
    if (written_pieces_ == 0) {
        startup_s_ = std::chrono::duration<double>(now - started_).count();
        play_origin_ = now;
        first_ts_ = piece->timestamp_ms;
        engine_.logger().with_job(job_->id).info("first piece {} after {:.3f} s", piece->sequence, *startup_s_);
    } else {
        const auto due = play_origin_ + std::chrono::milliseconds(piece->timestamp_ms - first_ts_) + stalled_;
        if (now > due + kLateTolerance) {
            ++late_pieces_;
            stalled_ += now - due;
        }
    }
    if (discontinuity)
        engine_.logger().with_job(job_->id).debug("discontinuity before piece {}", piece->sequence);
    ++written_pieces_;
    last_lag_ = static_cast<double>(unix_ms() - piece->timestamp_ms) / 1000.0;
    lags_.push_back(last_lag_);
    if (lags_.size() > kMaxLags)
        lags_.pop_front();
    out_->write(piece->data);
    if (out_->queued() > kMaxQueuedOutput)
        end(std::make_exception_ptr(Error(Errc::IO, "play", "output",
                                          fmt::format("the reader of '{}' is over {} MiB behind", output_path_,
                                                      kMaxQueuedOutput >> 20))));
}

nlohmann::json LivePlayJob::status() const
{
    const LiveSwarm *s = swarm_;
    const char *state = "resolving";
    if (s && s->has_descriptor())
        state = written_pieces_ ? "playing" : "joining";
    std::vector<double> lags(lags_.begin(), lags_.end());
    auto round3 = [](double v) { return std::round(v * 1000) / 1000; };
    auto opt = [](std::optional<std::uint64_t> v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    const std::uint64_t down = s ? s->downloaded() : 0, src = s ? s->from_source() : 0;
    return {{"state", state},
            {"content_id", to_hex(id_)},
            {"peers", s ? s->peer_count() : 0},
            {"download_rate", s ? std::round(s->download_rate()) : 0.0},
            {"upload_rate", s ? std::round(s->upload_rate()) : 0.0},
            {"buffer_s", s ? round3(s->buffer_seconds()) : 0.0},
            {"lag_s", round3(last_lag_)},
            {"position", s ? opt(s->position()) : nlohmann::json(nullptr)},
            {"newest", s ? opt(s->newest()) : nlohmann::json(nullptr)},
            {"pieces_written", written_pieces_},
            {"pieces_skipped", s ? s->skipped() : 0},
            {"pieces_late", late_pieces_},
            {"bytes_written", out_ ? out_->written() : 0},
            {"bytes_queued", out_ ? out_->queued() : 0},
            {"pieces_duplicate", s ? s->duplicates() : 0},
            {"bytes_from_source", src},
            {"bytes_from_peers", down - src},
            {"uploaded", s ? s->uploaded() : 0},
            {"startup_s", startup_s_ ? nlohmann::json(round3(*startup_s_)) : nlohmann::json(nullptr)},
            {"lag_p50_s", round3(percentile(lags, 0.5))},
            {"lag_p95_s", round3(percentile(lags, 0.95))},
            {"bans", s ? s->bans() : 0},
            {"output", output_path_}};
}

} // namespace openace::live
