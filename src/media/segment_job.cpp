// The `segment` job: one input → MPEG-TS chunks (stream copy) → VOD HLS in
// a directory.  Runs on a media thread started by the SegmenterEngine.
#include "core/error.hpp"
#include "media/hls.hpp"
#include "media/job_fields.hpp"
#include "media/media_job.hpp"
#include "media/source.hpp"
#include "media/ts_chunker.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

namespace openace::media {

void validate_segment_job(const nlohmann::json &spec)
{
    // {"type":"segment","input":str,"output_dir":str,"segment_duration":n>0,
    //  "format":str?,"realtime":bool?,"loop":bool?,"progressive":bool?,"priority":int?}
    if (!spec.is_object())
        throw_error(Errc::JOB, "job", "validate", "a segment job must be a JSON object");
    for (auto &[key, value] : spec.items()) {
        if (fields::check_common(key, value))
            continue;
        if (key == "progressive") {
            if (!value.is_boolean())
                fields::bad(key, fmt::format("expected a boolean, got {}", value.type_name()));
            continue;
        }
        fields::bad(key, "unknown field for a segment job (known: type, input, output_dir, segment_duration, "
                       "format, realtime, loop, progressive, priority)");
    }
    if (!spec.contains("input"))
        fields::bad("input", "missing (the file, URL or lavfi graph to segment)");
    if (!spec.contains("output_dir"))
        fields::bad("output_dir", "missing (the directory to write index.m3u8 and segments to)");
}

namespace {

nlohmann::json segment(const nlohmann::json &spec, MediaJobContext &ctx);

} // namespace

nlohmann::json run_segment_job(const nlohmann::json &spec, MediaJobContext &ctx)
{
    try {
        return segment(spec, ctx);
    } catch (const Error &e) {
        // Every failure names the input (the muxer and writer do not know it).
        std::string input = spec.at("input").get<std::string>();
        if (e.code() == Errc::CANCELLED || e.detail().find(input) != std::string::npos)
            throw;
        throw Error(e.code(), e.component(), e.operation(), fmt::format("input '{}': {}", input, e.detail()));
    }
}

namespace {

nlohmann::json segment(const nlohmann::json &spec, MediaJobContext &ctx)
{
    // Without output_dir (a feed for another engine, e.g. a broadcast) the
    // chunks go to ctx.chunk only and the job runs until the source ends or
    // the job is cancelled.
    const std::string input = spec.at("input").get<std::string>();
    const std::string out_dir = spec.value("output_dir", "");
    const bool feed = out_dir.empty();
    const double seg = spec.value("segment_duration", feed ? ctx.piece_duration : 6.0);

    SourceOptions so;
    so.input = input;
    so.format = spec.value("format", "");
    so.realtime = spec.value("realtime", false);
    so.loop = spec.value("loop", false);
    so.keyframe_interval = seg;
    so.cancel = ctx.cancel;
    so.log = ctx.log;
    Source source(std::move(so));
    source.open();

    std::optional<VodWriter> vod;
    if (!feed)
        vod.emplace(VodWriter::Options{out_dir, "index.m3u8", "segment_", seg,
                                       spec.value("progressive", false), false});

    using clock = std::chrono::steady_clock;
    auto last_progress = clock::now();
    std::unique_ptr<TsChunker> chunker;
    auto report = [&](bool force) {
        auto now = clock::now();
        if (!ctx.progress || (!force && now - last_progress < std::chrono::milliseconds(500)))
            return;
        last_progress = now;
        nlohmann::json p = {{"seconds_done", std::round(source.position_s() * 1000) / 1000},
                            {"segments", vod ? vod->segments() : chunker->chunks()}};
        if (source.duration_s() > 0 && !spec.value("loop", false))
            p["percent"] = std::round(std::min(100.0, 100.0 * source.position_s() / source.duration_s()) * 10) / 10;
        ctx.progress(std::move(p));
    };

    auto sink = [&](Chunk c) {
        if (vod)
            vod->add(std::move(c));
        else if (ctx.chunk)
            ctx.chunk(std::move(c));
    };
    TsChunkerOptions co;
    co.target_duration = seg;
    co.max_duration = std::max(60.0, 10 * seg);
    co.log = ctx.log;
    chunker = std::make_unique<TsChunker>(source.streams(), co, sink);
    uint64_t layout = source.layout_version();
    PacketPtr pkt = make_packet();
    // A cancelled job keeps what it wrote: the playlist names the segments
    // so far (recording a live or looped source until cancel is a use).
    struct KeepOnCancel {
        std::unique_ptr<TsChunker> &chunker;
        std::optional<VodWriter> &vod;
        MediaJobContext &ctx;
        ~KeepOnCancel()
        {
            if (!ctx.cancelled() || !chunker || !vod)
                return;
            try {
                chunker->finish();
                if (vod->segments() > 0 || chunker->chunks() > 0)
                    vod->finish();
            } catch (const std::exception &e) {
                ctx.log.warn("cannot finish the playlist of a cancelled job: {}", e.what());
            }
        }
    } keep{chunker, vod, ctx};
    while (source.read(pkt.get())) {
        if (source.layout_version() != layout) {
            // Different streams after a reconnect: a new muxer, same numbering.
            chunker->finish();
            co.first_seq = chunker->next_seq();
            chunker = std::make_unique<TsChunker>(source.streams(), co, sink);
            chunker->mark_discontinuity();
            layout = source.layout_version();
        } else if (source.discontinuity()) {
            chunker->mark_discontinuity();
        }
        chunker->write(pkt.get());
        av_packet_unref(pkt.get());
        report(false);
    }
    chunker->finish();
    report(true);
    if (chunker->dropped_packets())
        ctx.log.debug("dropped {} packets (before the first keyframe or without timestamps)",
                      chunker->dropped_packets());
    if (!vod) {
        if (chunker->next_seq() == 0)
            throw_errorf(Errc::MEDIA, "segmenter", "feed", "input '{}' produced no media", input);
        return {{"chunks", chunker->next_seq()}, {"seconds", std::round(source.position_s() * 1000) / 1000}};
    }
    vod->finish();
    if (vod->segments() == 0)
        throw_errorf(Errc::MEDIA, "segmenter", "segment", "input '{}' produced no media to segment", input);
    ctx.log.info("segmented '{}' into {} segments ({:.3f} s, {} bytes) in '{}'", input, vod->segments(),
                 vod->duration_s(), vod->bytes(), out_dir);
    return {{"output_dir", out_dir},
            {"playlist", vod->playlist_path()},
            {"segments", vod->segments()},
            {"duration_s", std::round(vod->duration_s() * 1000) / 1000},
            {"bytes", vod->bytes()}};
}

} // namespace

} // namespace openace::media
