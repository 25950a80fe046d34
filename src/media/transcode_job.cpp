// The `transcode` job: one input → an ABR ladder → VOD HLS in a directory
// (one subdirectory per rendition plus master.m3u8), or live chunks (one
// chunk stream per rendition) when there is no output_dir.  Runs on a media
// thread started by the SegmenterEngine.
#include "core/error.hpp"
#include "media/encoder_select.hpp"
#include "media/hls.hpp"
#include "media/ladder.hpp"
#include "media/job_fields.hpp"
#include "media/media_job.hpp"
#include "media/source.hpp"
#include "media/transcoder.hpp"
#include "media/ts_chunker.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>

namespace openace::media {

namespace {

constexpr double kDefaultVodSegment = 6.0;
constexpr const char *kPresets[] = {"ultrafast", "superfast", "veryfast", "faster", "fast",
                                    "medium",    "slow",      "slower",   "veryslow"};

// streaming.piece_duration, as the engine passes it in the context.
double piece_duration_of(const MediaJobContext &ctx)
{
    return ctx.piece_duration > 0 ? ctx.piece_duration : 1.0;
}

double round3(double v) { return std::round(v * 1000) / 1000; }

// Errors from the ingest side name the input in most cases; make sure every
// one does.
[[noreturn]] void rethrow_naming(const Error &e, const std::string &input)
{
    if (e.detail().find(input) != std::string::npos)
        throw e;
    throw Error(e.code(), e.component(), e.operation(),
                fmt::format("input '{}': {}", input, e.detail()));
}

struct Rendition {
    std::unique_ptr<TsChunker> chunker;
    std::unique_ptr<VodWriter> vod;
    uint64_t next_seq = 0;
    uint64_t chunks = 0;
    bool discontinuity = false; // mark the next chunker
};

std::string master_playlist(const std::vector<Rendition> &out, const Transcoder &tx)
{
    std::string m = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n";
    for (size_t i = 0; i < out.size(); ++i) {
        const Rung &r = tx.rung(i);
        const VodWriter &v = *out[i].vod;
        // RFC 8216 4.3.4.2: BANDWIDTH is the peak segment bit rate; both
        // measured on the segments as written (TS overhead and audio included).
        uint64_t peak = v.peak_bandwidth();
        uint64_t avg = v.average_bandwidth();
        if (peak == 0)
            peak = uint64_t(r.bitrate) + (tx.has_audio() ? 128000 : 0);
        m += fmt::format("#EXT-X-STREAM-INF:BANDWIDTH={}", peak);
        if (avg > 0)
            m += fmt::format(",AVERAGE-BANDWIDTH={}", avg);
        m += fmt::format(",RESOLUTION={}x{},CODECS=\"{}\"", r.width, r.height, tx.codecs(i));
        if (tx.frame_rate() > 0)
            m += fmt::format(",FRAME-RATE={:.3f}", tx.frame_rate());
        m += fmt::format("\n{}/{}\n", r.name, "index.m3u8");
    }
    return m;
}

} // namespace

void validate_transcode_job(const nlohmann::json &spec)
{
    // {"type":"transcode","input":str,"ladder":[…],"output_dir":str?,
    //  "segment_duration":n?,"format":str?,"realtime":bool?,"loop":bool?,
    //  "preset":str?,"priority":int?}
    if (!spec.is_object())
        throw_error(Errc::JOB, "job", "validate", "a transcode job must be a JSON object");
    for (auto &[key, value] : spec.items()) {
        if (fields::check_common(key, value))
            continue;
        if (key == "ladder") {
            parse_ladder(value); // throws naming the rung
            continue;
        }
        if (key == "preset") {
            if (!value.is_string())
                fields::bad(key, fmt::format("expected a string, got {}", value.type_name()));
            auto p = value.get<std::string>();
            if (std::find(std::begin(kPresets), std::end(kPresets), p) == std::end(kPresets))
                fields::bad(key, fmt::format("unknown x264 preset '{}' (ultrafast … veryslow)", p));
            continue;
        }
        fields::bad(key, "unknown field for a transcode job (known: type, input, ladder, output_dir, "
                       "segment_duration, format, realtime, loop, preset, priority)");
    }
    if (!spec.contains("input"))
        fields::bad("input", "missing (the file, URL or lavfi graph to transcode)");
    if (!spec.contains("ladder"))
        fields::bad("ladder", "missing (the renditions to make, e.g. [\"720p\",\"480p\",\"360p\"])");
    if (spec.contains("output_dir") && spec.value("loop", false))
        fields::bad("loop", "a looped input never ends, so it cannot be written to output_dir "
                          "(leave output_dir out for a live transcode)");
}

nlohmann::json run_transcode_job(const nlohmann::json &spec, MediaJobContext &ctx)
{
    const std::string input = spec.at("input").get<std::string>();
    const std::string out_dir = spec.value("output_dir", "");
    const bool vod = !out_dir.empty();
    const double seg =
        spec.value("segment_duration", vod ? kDefaultVodSegment : piece_duration_of(ctx));
    std::vector<Rung> ladder = parse_ladder(spec.at("ladder"));
    const core::Logger &log = ctx.log;

    const EncoderSelection &sel = select_h264_encoder(ctx.hardware_acceleration, log);
    if (sel.selected.empty())
        throw_errorf(Errc::UNSUPPORTED, "transcode", "encoder", "cannot transcode input '{}': {}",
                     input, sel.error);

    SourceOptions so;
    so.input = input;
    so.format = spec.value("format", "");
    so.realtime = spec.value("realtime", false);
    so.loop = spec.value("loop", false);
    so.keyframe_interval = seg;
    so.cancel = ctx.cancel;
    so.log = log;
    Source source(std::move(so));
    try {
        source.open();
    } catch (const Error &e) {
        rethrow_naming(e, input);
    }
    if (!source.has_video())
        throw_errorf(Errc::MEDIA, "transcode", "open",
                     "input '{}' has no video stream for the ladder (audio only)", input);

    TranscoderOptions to;
    to.ladder = ladder;
    to.keyframe_interval = seg;
    to.encoder = sel.selected;
    to.preset = spec.value("preset", "veryfast");
    to.cancel = ctx.cancel;

    std::vector<Rendition> out(ladder.size());
    if (vod) {
        std::error_code ec;
        std::filesystem::create_directories(out_dir, ec);
        if (ec)
            throw_errorf(Errc::IO, "transcode", "output", "cannot create output_dir '{}': {}",
                         out_dir, ec.message());
        for (size_t i = 0; i < ladder.size(); ++i)
            out[i].vod = std::make_unique<VodWriter>(VodWriter::Options{
                (std::filesystem::path(out_dir) / ladder[i].name).string(), "index.m3u8",
                "segment_", seg, false});
    }

    std::unique_ptr<Transcoder> tx;
    // Chunkers open at a rendition's first packet: the encoder parameters
    // exist from then on.
    auto sink = [&](size_t r, int stream, AVPacket *pkt) {
        Rendition &ro = out[r];
        if (!ro.chunker) {
            std::vector<StreamSpec> specs{tx->video_stream(r)};
            if (tx->has_audio())
                specs.push_back(tx->audio_stream());
            TsChunkerOptions co;
            co.target_duration = seg;
            co.max_duration = std::max(60.0, 10 * seg);
            co.rendition = int(r);
            co.first_seq = ro.next_seq;
            co.log = log;
            ro.chunker = std::make_unique<TsChunker>(specs, co, [&ro, vod, &ctx](Chunk c) {
                ++ro.chunks;
                if (vod)
                    ro.vod->add(std::move(c));
                else if (ctx.chunk)
                    ctx.chunk(std::move(c));
            });
            if (ro.discontinuity)
                ro.chunker->mark_discontinuity();
            ro.discontinuity = false;
        }
        pkt->stream_index = stream;
        ro.chunker->write(pkt);
    };
    auto make_transcoder = [&] {
        try {
            return std::make_unique<Transcoder>(input, source.streams(), to, log, sink);
        } catch (const Error &e) {
            rethrow_naming(e, input);
        }
    };
    // Ends the current transcoder's output (input layout change or end).
    auto close_all = [&] {
        tx->finish();
        for (auto &ro : out) {
            if (!ro.chunker)
                continue;
            ro.chunker->finish();
            ro.next_seq = ro.chunker->next_seq();
            ro.chunker.reset();
        }
    };

    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto last_progress = t0;
    double done_before = 0; // media seconds of earlier transcoders (layout changes)
    int64_t frames_before = 0;
    auto seconds_done = [&] { return done_before + (tx ? tx->seconds_done() : 0); };
    auto report = [&](bool force) {
        auto now = clock::now();
        if (!ctx.progress || (!force && now - last_progress < std::chrono::milliseconds(500)))
            return;
        last_progress = now;
        double wall = std::chrono::duration<double>(now - t0).count();
        double done = seconds_done();
        int64_t frames = frames_before + (tx ? tx->frames() : 0);
        nlohmann::json p = {{"seconds_done", round3(done)},
                            {"fps", wall > 0 ? std::round(frames / wall * 10) / 10 : 0.0},
                            {"speed", wall > 0 ? round3(done / wall) : 0.0}};
        if (source.duration_s() > 0)
            p["percent"] = std::round(std::min(100.0, 100.0 * done / source.duration_s()) * 10) / 10;
        ctx.progress(std::move(p));
    };

    tx = make_transcoder();
    std::string encoder_used = sel.selected;
    int fallbacks = 0;
    uint64_t layout = source.layout_version();
    PacketPtr pkt = make_packet();
    try {
        while (source.read(pkt.get())) {
            if (source.layout_version() != layout) {
                // Different streams after a reconnect: new decoders and
                // encoders, same chunk numbering, a discontinuity.
                log.warn("input '{}' changed its streams: restarting the transcoder", input);
                close_all();
                done_before = seconds_done();
                frames_before += tx->frames();
                fallbacks += tx->fallbacks();
                tx = make_transcoder();
                for (auto &ro : out)
                    ro.discontinuity = true;
                layout = source.layout_version();
            } else if (source.discontinuity()) {
                tx->force_keyframe();
                for (auto &ro : out) {
                    if (ro.chunker)
                        ro.chunker->mark_discontinuity();
                    else
                        ro.discontinuity = true;
                }
            }
            tx->send(pkt.get());
            av_packet_unref(pkt.get());
            report(false);
        }
        close_all();
    } catch (const Error &e) {
        rethrow_naming(e, input);
    }
    fallbacks += tx->fallbacks();
    if (fallbacks > 0)
        encoder_used = tx->encoder(0);
    const double duration = seconds_done();
    report(true);
    if (tx->frames() + frames_before == 0)
        throw_errorf(Errc::MEDIA, "transcode", "decode", "input '{}' produced no video frames to transcode",
                     input);

    nlohmann::json rends = nlohmann::json::array();
    for (size_t i = 0; i < out.size(); ++i) {
        const Rung &r = tx->rung(i);
        nlohmann::json j = {{"name", r.name},     {"width", r.width},
                            {"height", r.height}, {"bitrate", r.bitrate},
                            {"codecs", tx->codecs(i)}};
        if (vod) {
            out[i].vod->finish();
            j["segments"] = out[i].vod->segments();
            j["playlist"] = out[i].vod->playlist_path();
            j["bandwidth"] = out[i].vod->peak_bandwidth();
        } else {
            j["chunks"] = out[i].chunks;
        }
        rends.push_back(std::move(j));
    }

    nlohmann::json result = {{"renditions", std::move(rends)},
                             {"encoder", encoder_used},
                             {"duration_s", round3(duration)}};
    if (fallbacks > 0)
        result["encoder_fallbacks"] = fallbacks;
    if (vod) {
        const std::string master = (std::filesystem::path(out_dir) / "master.m3u8").string();
        std::string text = master_playlist(out, *tx);
        write_file_atomic(master, {text});
        result["output_dir"] = out_dir;
        result["master_playlist"] = master;
    }
    double wall = std::chrono::duration<double>(clock::now() - t0).count();
    log.info("transcoded '{}' ({:.3f} s) to {} rendition{} with {} in {:.1f} s ({:.2f}x realtime)",
             input, duration, out.size(), out.size() == 1 ? "" : "s", encoder_used, wall,
             wall > 0 ? duration / wall : 0.0);
    return result;
}

} // namespace openace::media
