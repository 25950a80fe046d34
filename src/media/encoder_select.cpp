#include "media/encoder_select.hpp"

#include "media/av_util.hpp"

#include <nlohmann/json.hpp>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/hwcontext.h>
#include <libavutil/opt.h>
}

#include <chrono>
#include <mutex>
#include <optional>

namespace openace::media {

namespace {

// The probe order of the issue: NVENC, QSV, VAAPI, VideoToolbox, AMF.
struct HwCandidate {
    const char *name;
    const char *device;          // av_hwdevice type name
    AVPixelFormat hw_format;     // AV_PIX_FMT_NONE: the encoder takes system-memory frames
};

constexpr HwCandidate kHardware[] = {
    {"h264_nvenc", "cuda", AV_PIX_FMT_NONE},
    {"h264_qsv", "qsv", AV_PIX_FMT_QSV},
    {"h264_vaapi", "vaapi", AV_PIX_FMT_VAAPI},
    {"h264_videotoolbox", "videotoolbox", AV_PIX_FMT_NONE},
    // FFmpeg 5.1 has no AMF device type: the encoder opens the AMF runtime
    // itself, so opening its session is the device test.
    {"h264_amf", "amf", AV_PIX_FMT_NONE},
};

constexpr const char *kSoftware = "libx264";

const HwCandidate *find_hw(const std::string &name)
{
    for (auto &c : kHardware)
        if (name == c.name)
            return &c;
    return nullptr;
}

// Failing to open absent devices is expected while probing: keep FFmpeg's own
// messages (which go to stderr) out of the way; the reasons are reported.
class QuietAvLog {
public:
    QuietAvLog() : old_(av_log_get_level()) { av_log_set_level(AV_LOG_QUIET); }
    ~QuietAvLog() { av_log_set_level(old_); }
    QuietAvLog(const QuietAvLog &) = delete;
    QuietAvLog &operator=(const QuietAvLog &) = delete;

private:
    int old_;
};

void set_opt(AVCodecContext *ctx, const char *key, const char *value)
{
    // Private options differ per encoder; one that does not exist is fine.
    av_opt_set(ctx->priv_data, key, value, 0);
}

} // namespace

bool is_software_encoder(const std::string &name) { return name == kSoftware; }

nlohmann::json to_json(const EncoderSelection &s)
{
    nlohmann::json cands = nlohmann::json::array();
    for (auto &c : s.candidates) {
        nlohmann::json j = {{"name", c.name}, {"device", c.device}, {"ok", c.ok}};
        if (!c.reason.empty())
            j["reason"] = c.reason;
        cands.push_back(std::move(j));
    }
    nlohmann::json j = {{"hardware_acceleration", s.hardware_acceleration},
                        {"selected", s.selected.empty() ? nlohmann::json() : nlohmann::json(s.selected)},
                        {"candidates", std::move(cands)},
                        {"probe_ms", s.probe_ms}};
    if (!s.device.empty())
        j["device"] = s.device;
    if (!s.error.empty())
        j["error"] = s.error;
    return j;
}

EncoderSession::~EncoderSession()
{
    avcodec_free_context(&ctx_);
    av_frame_free(&upload_);
    av_buffer_unref(&frames_);
    av_buffer_unref(&device_);
}

std::unique_ptr<EncoderSession> EncoderSession::open(const std::string &name,
                                                     const EncoderConfig &cfg, std::string &reason)
{
    const AVCodec *codec = avcodec_find_encoder_by_name(name.c_str());
    if (!codec) {
        reason = fmt::format("encoder {} is not built into this FFmpeg ({})", name,
                             av_version_info());
        return nullptr;
    }
    std::unique_ptr<EncoderSession> s(new EncoderSession);
    s->name_ = name;
    const HwCandidate *hw = find_hw(name);
    s->hardware_ = hw != nullptr;

    if (hw) {
        auto type = av_hwdevice_find_type_by_name(hw->device);
        if (type != AV_HWDEVICE_TYPE_NONE) {
            int rc = av_hwdevice_ctx_create(&s->device_, type, nullptr, nullptr, 0);
            if (rc < 0) {
                reason = fmt::format("cannot open a {} device (no usable GPU or driver here): {}",
                                     hw->device, av_error(rc));
                return nullptr;
            }
        } else if (hw->hw_format != AV_PIX_FMT_NONE) {
            reason = fmt::format("this FFmpeg has no {} device support", hw->device);
            return nullptr;
        }
    }

    s->ctx_ = avcodec_alloc_context3(codec);
    if (!s->ctx_) {
        reason = "out of memory";
        return nullptr;
    }
    AVCodecContext *c = s->ctx_;
    c->width = cfg.width;
    c->height = cfg.height;
    c->time_base = cfg.time_base;
    c->framerate = cfg.framerate;
    c->sample_aspect_ratio = AVRational{1, 1};
    c->gop_size = cfg.gop;
    c->max_b_frames = cfg.b_frames ? (s->hardware_ ? 0 : 3) : 0;
    c->bit_rate = cfg.bitrate;
    // A VBV bound keeps segment sizes near the advertised BANDWIDTH.
    c->rc_max_rate = cfg.bitrate + cfg.bitrate / 2;
    c->rc_buffer_size = static_cast<int>(std::min<int64_t>(cfg.bitrate * 2, INT32_MAX));
    c->thread_count = cfg.threads;

    if (hw && hw->hw_format != AV_PIX_FMT_NONE) {
        s->frames_ = av_hwframe_ctx_alloc(s->device_);
        if (!s->frames_) {
            reason = "cannot allocate a hardware frames context";
            return nullptr;
        }
        auto *fc = reinterpret_cast<AVHWFramesContext *>(s->frames_->data);
        fc->format = hw->hw_format;
        fc->sw_format = AV_PIX_FMT_NV12;
        fc->width = cfg.width;
        fc->height = cfg.height;
        fc->initial_pool_size = 20; // QSV needs a fixed pool
        int rc = av_hwframe_ctx_init(s->frames_);
        if (rc < 0) {
            reason = fmt::format("cannot create {} frames: {}", hw->device, av_error(rc));
            return nullptr;
        }
        c->pix_fmt = hw->hw_format;
        c->hw_frames_ctx = av_buffer_ref(s->frames_);
        s->input_format_ = AV_PIX_FMT_NV12;
        s->upload_ = av_frame_alloc();
    } else {
        // System-memory frames: yuv420p when the encoder takes it, else its
        // first format.
        AVPixelFormat fmt = AV_PIX_FMT_NONE;
        for (auto p = codec->pix_fmts; p && *p != AV_PIX_FMT_NONE; ++p) {
            if (*p == AV_PIX_FMT_YUV420P) {
                fmt = *p;
                break;
            }
            if (fmt == AV_PIX_FMT_NONE && *p == AV_PIX_FMT_NV12)
                fmt = *p;
        }
        if (fmt == AV_PIX_FMT_NONE)
            fmt = codec->pix_fmts ? codec->pix_fmts[0] : AV_PIX_FMT_YUV420P;
        c->pix_fmt = fmt;
        s->input_format_ = fmt;
        if (s->device_)
            c->hw_device_ctx = av_buffer_ref(s->device_);
    }

    // Keyframes only where the transcoder forces them (aligned across
    // renditions) or at the GOP limit: no scene-cut keyframes, which would
    // differ per resolution.
    if (name == kSoftware) {
        set_opt(c, "preset", cfg.preset.c_str());
        set_opt(c, "forced-idr", "1");
        set_opt(c, "x264-params", "scenecut=0:open-gop=0");
    } else {
        set_opt(c, "forced-idr", "1"); // nvenc
        set_opt(c, "forced_idr", "1"); // qsv
        set_opt(c, "no-scenecut", "1");
        set_opt(c, "preset", "p4");
    }

    int rc = avcodec_open2(c, codec, nullptr);
    if (rc < 0) {
        reason = fmt::format("cannot open an {} encoder session: {}", name, av_error(rc));
        return nullptr;
    }
    return s;
}

int EncoderSession::send(const AVFrame *frame)
{
    if (!frame || !frames_)
        return avcodec_send_frame(ctx_, frame);
    av_frame_unref(upload_);
    int rc = av_hwframe_get_buffer(frames_, upload_, 0);
    if (rc < 0)
        return rc;
    rc = av_hwframe_transfer_data(upload_, frame, 0);
    if (rc < 0)
        return rc;
    rc = av_frame_copy_props(upload_, frame);
    if (rc < 0)
        return rc;
    return avcodec_send_frame(ctx_, upload_);
}

EncoderSelection probe_h264_encoders(bool hardware_acceleration, const char *skip_reason)
{
    auto t0 = std::chrono::steady_clock::now();
    EncoderSelection sel;
    sel.hardware_acceleration = hardware_acceleration;
    // A small session: enough to prove the device and the encoder work.
    EncoderConfig cfg;
    cfg.width = 320;
    cfg.height = 240;
    cfg.time_base = {1, 25};
    cfg.framerate = {25, 1};
    cfg.bitrate = 500000;
    cfg.gop = 25;
    cfg.threads = 1;
    {
        QuietAvLog quiet;
        for (auto &hw : kHardware) {
            EncoderCandidate c{hw.name, hw.device, false, {}};
            if (skip_reason) {
                c.reason = skip_reason;
            } else if (!hardware_acceleration) {
                c.reason = "skipped: streaming.hardware_acceleration is false";
            } else if (sel.selected.empty()) {
                std::string reason;
                auto session = EncoderSession::open(hw.name, cfg, reason);
                if (session) {
                    c.ok = true;
                    sel.selected = hw.name;
                    sel.device = hw.device;
                } else {
                    c.reason = reason;
                }
            } else {
                c.reason = fmt::format("skipped: {} was selected first", sel.selected);
            }
            sel.candidates.push_back(std::move(c));
        }
        if (sel.selected.empty()) {
            std::string reason;
            if (EncoderSession::open(kSoftware, cfg, reason))
                sel.selected = kSoftware;
            else
                sel.error = fmt::format("no H.264 encoder works: {}; every hardware encoder was "
                                        "rejected or skipped",
                                        reason);
        }
    }
    sel.probe_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                       .count();
    return sel;
}

const EncoderSelection &select_h264_encoder(bool hardware_acceleration, const core::Logger &log)
{
    static std::mutex mu;
    static std::optional<EncoderSelection> cache[2];
    std::lock_guard lock(mu);
    auto &slot = cache[hardware_acceleration ? 1 : 0];
    if (slot)
        return *slot;
    slot = probe_h264_encoders(hardware_acceleration);
    if (hardware_acceleration) {
        for (auto &c : slot->candidates)
            if (!c.ok)
                log.info("H.264 encoder {} ({}) rejected: {}", c.name, c.device, c.reason);
    }
    if (!slot->selected.empty())
        log.info("H.264 encoder: {}{} (hardware acceleration {}, probed in {:.0f} ms)",
                 slot->selected, slot->device.empty() ? "" : " on " + slot->device,
                 hardware_acceleration ? "on" : "off", slot->probe_ms);
    else
        log.error("{}", slot->error);
    return *slot;
}

} // namespace openace::media
