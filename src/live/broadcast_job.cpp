#include "live/broadcast_job.hpp"

#include "core/error.hpp"
#include "core/file_read.hpp"
#include "core/sha1.hpp"
#include "engine/job_fields.hpp"
#include "live/ecdsa.hpp"
#include "live/live_engine.hpp"
#include "live/live_swarm.hpp"
#include "media/segmenter_engine.hpp"
#include "net/uv_handle.hpp"
#include "transport/swarm_job_fields.hpp"
#include "transport/identity.hpp"
#include "transport/transport_engine.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace openace::live {

namespace fs = std::filesystem;
using engine::fields::bad;

namespace {

std::int64_t unix_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string read_small_file(const std::string &path, const char *what, std::size_t max)
{
    std::string data;
    const core::FileRead r = core::read_file(path, max, data);
    if (r.status == core::FileRead::Status::Unreadable)
        throw_errorf(Errc::IO, "broadcast", what, "cannot read '{}': {}", path, r.error);
    if (r.status == core::FileRead::Status::TooLarge)
        throw_errorf(Errc::INVAL, "broadcast", what, "'{}' is {} bytes, over the {} byte limit", path, r.size, max);
    return data;
}

// Writes `data` to `path` through a temporary file and a rename.
void write_file(const std::string &path, const std::string &data, const char *what)
{
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << data;
        out.flush();
        if (!out)
            throw_errorf(Errc::IO, "broadcast", what, "cannot write '{}'", tmp);
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
        throw_errorf(Errc::IO, "broadcast", what, "cannot write '{}': {}", path, ec.message());
}

std::string default_name(const std::string &source)
{
    std::string s = source.rfind("lavfi:", 0) == 0 ? "test channel" : fs::path(source).filename().string();
    if (s.empty())
        s = source;
    return s.substr(0, kMaxNameBytes);
}

} // namespace

void BroadcastJob::validate(const nlohmann::json &spec)
{
    for (auto it = spec.begin(); it != spec.end(); ++it) {
        const std::string &key = it.key();
        const auto &v = it.value();
        if (key == "type" || key == "priority")
            continue;
        if (key == "source" || key == "key" || key == "save") {
            if (!v.is_string() || v.get_ref<const std::string &>().empty())
                bad(key, key == "source" ? "expected a file, URL or lavfi:<graph>" : "expected a file path");
        } else if (key == "name") {
            if (!v.is_string() || v.get_ref<const std::string &>().empty() ||
                v.get_ref<const std::string &>().size() > kMaxNameBytes)
                bad(key, fmt::format("expected a string of 1..{} bytes", kMaxNameBytes));
        } else if (key == "piece_duration") {
            if (!v.is_number() || !(v.get<double>() >= kMinPieceDuration && v.get<double>() <= kMaxPieceDuration))
                bad(key, fmt::format("expected seconds in {}..{}", kMinPieceDuration, kMaxPieceDuration));
        } else if (key == "ladder") {
            if (!v.is_array() || v.size() != 1)
                bad(key, "expected one rung, e.g. [\"480p\"] (one broadcast carries one rendition)");
        } else if (key == "realtime" || key == "loop") {
            if (!v.is_boolean())
                bad(key, fmt::format("expected a boolean, got {}", v.type_name()));
        } else if (!transport::fields::check_swarm_field(key, v)) {
            bad(key, "unknown field for a broadcast job (known: type, source, name, piece_duration, ladder, "
                     "trackers, peers, realtime, loop, key, save, priority)");
        }
    }
    if (!spec.contains("source"))
        bad("source", "missing (a file, URL or lavfi:<graph> to broadcast)");
}

BroadcastJob::~BroadcastJob()
{
    release();
}

void BroadcastJob::release()
{
    if (!feeding_)
        return;
    feeding_ = false;
    try {
        engine_.segmenter().stop_feed(job_->id);
    } catch (const Error &) {
        // The segmenter stopped: the feed is gone with it.
    }
}

void BroadcastJob::start()
{
    const auto &spec = job_->spec;
    const auto &cfg = engine_.config();
    transport::TransportEngine &transport = engine_.transport();
    const std::string source = spec.at("source").get<std::string>();

    // The key: --key FILE, else the engine's identity key.
    std::string key_pem;
    std::string key_where = "the engine identity";
    if (spec.contains("key")) {
        key_where = spec["key"].get<std::string>();
        key_pem = read_small_file(key_where, "key", 64 * 1024);
    } else if (const transport::Identity *id = transport.identity()) {
        key_pem = id->key_pem;
    } else {
        throw_error(Errc::INVAL, "broadcast", "key",
                    "no key: set engine.state_dir (the key is kept there) or give a key file");
    }

    LiveDescriptor d;
    d.name = spec.contains("name") ? spec["name"].get<std::string>() : default_name(source);
    try {
        d.public_key_der = EcdsaSigner(key_pem, "key").public_key_der();
    } catch (const Error &e) {
        throw_errorf(Errc::INVAL, "broadcast", "key", "{}: {}", key_where, e.detail());
    }
    piece_duration_ = spec.value("piece_duration", cfg.streaming.piece_duration);
    d.piece_duration = std::round(piece_duration_ * 1000) / 1000;
    d.created = unix_ms() / 1000;

    // The same name, key and piece duration keep their creation time, so a
    // restarted broadcast keeps its content id.
    std::string stored;
    if (!cfg.engine.state_dir.empty()) {
        LiveDescriptor probe = d;
        probe.created = 0;
        const std::string dir = cfg.engine.state_dir + "/live";
        stored = dir + "/" + to_hex(core::Sha1::hash(probe.encode())) + ".acelive";
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (fs::exists(stored, ec)) {
            try {
                LiveDescriptor old = parse_descriptor(read_small_file(stored, "descriptor", kMaxDescriptorBytes));
                if (old.name == d.name && old.public_key_der == d.public_key_der &&
                    std::abs(old.piece_duration - d.piece_duration) < 0.0005)
                    d.created = old.created;
            } catch (const Error &e) {
                engine_.logger().warn("ignoring the stored descriptor '{}': {}", stored, e.detail());
            }
        }
    }
    const std::string encoded = d.encode();
    id_ = d.content_id();
    if (!stored.empty())
        write_file(stored, encoded, "descriptor");
    if (spec.contains("save")) {
        descriptor_path_ = spec["save"].get<std::string>();
        write_file(descriptor_path_, encoded, "save");
    }
    signer_.emplace(key_pem, id_);
    listen_port_ = transport.listen_port();

    LiveSwarm &s = hold(id_);
    s.set_descriptor(encoded);
    s.set_source();
    std::vector<std::string> trackers = transport::fields::swarm_trackers(spec, cfg);
    if (!transport.embedded_tracker_url().empty())
        trackers.push_back(transport.embedded_tracker_url());
    s.add_trackers(trackers);
    const std::vector<transport::PeerAddress> peers = transport::fields::swarm_peers(spec, cfg);
    s.add_peers(peers, true);
    s.start();

    // Sequence numbers continue across restarts: they start at the time
    // divided by the piece duration.
    first_seq_ = static_cast<std::uint64_t>(unix_ms() / std::max<std::int64_t>(1, std::llround(d.piece_duration * 1000)));

    nlohmann::json media = {{"type", "segment"},
                            {"input", source},
                            {"segment_duration", d.piece_duration},
                            {"realtime", spec.value("realtime", true)},
                            {"loop", spec.value("loop", false)}};
    if (spec.contains("ladder")) {
        media["type"] = "transcode";
        media["ladder"] = spec["ladder"];
    }
    std::weak_ptr<BroadcastJob> weak = weak_self<BroadcastJob>();
    media::SegmenterEngine::Feed feed;
    feed.on_chunk = [weak](media::Chunk c) {
        if (auto self = weak.lock())
            self->on_chunk(std::move(c));
    };
    feed.on_end = [weak](nlohmann::json result, std::exception_ptr error) {
        if (auto self = weak.lock())
            self->on_feed_end(std::move(result), error);
    };
    engine_.segmenter().start_feed(job_, std::move(media), std::move(feed));
    feeding_ = true;
    engine_.logger().with_job(job_->id).info("broadcasting '{}' as acestream://{}", d.name, to_hex(id_));
    start_reporting();
}

void BroadcastJob::on_chunk(media::Chunk c)
{
    if (ended_ || !swarm_ || !c.data || c.data->empty())
        return;
    auto piece = std::make_shared<LivePiece>();
    piece->sequence = first_seq_ + c.seq;
    piece->timestamp_ms = unix_ms();
    piece->data = *c.data;
    signer_->sign(*piece);
    if (pieces_ == 0)
        first_piece_ = std::chrono::steady_clock::now();
    ++pieces_;
    bytes_ += piece->data.size();
    newest_ = piece->sequence;
    swarm_->publish(std::move(piece));
}

void BroadcastJob::on_feed_end(nlohmann::json result, std::exception_ptr error)
{
    feeding_ = false;
    if (error) {
        end(error);
        return;
    }
    nlohmann::json r = status();
    r["state"] = "ended";
    r["source"] = std::move(result);
    end(nullptr, std::move(r));
}

nlohmann::json BroadcastJob::status() const
{
    nlohmann::json j = {{"state", pieces_ ? "live" : "starting"},
                        {"content_id", to_hex(id_)},
                        {"link", "acestream://" + to_hex(id_)},
                        {"descriptor", descriptor_path_.empty() ? nlohmann::json(nullptr) : nlohmann::json(descriptor_path_)},
                        {"pieces", pieces_},
                        {"newest", newest_ ? nlohmann::json(*newest_) : nlohmann::json(nullptr)},
                        {"peers", swarm_ ? swarm_->peer_count() : 0},
                        {"uploaded", swarm_ ? swarm_->uploaded() : 0},
                        {"upload_rate", swarm_ ? std::round(swarm_->upload_rate()) : 0.0},
                        {"stream_rate", 0.0},
                        {"listen_port", listen_port_}};
    if (pieces_ > 1) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_piece_).count();
        // pieces_ - 1 pieces of media were cut since the first one.
        if (s > 0)
            j["stream_rate"] = std::round(static_cast<double>(bytes_) / std::max(s, piece_duration_ * static_cast<double>(pieces_ - 1)));
    }
    return j;
}

} // namespace openace::live
