// H.264 encoder selection (streaming.hardware_acceleration).
//
// Each hardware candidate is probed by really opening its device
// (av_hwdevice_ctx_create) and an encoder session on it (avcodec_open2 on a
// small frame, with a hardware frames context where the encoder needs one):
// an encoder being compiled in proves nothing about the machine.  The first
// candidate that opens wins; otherwise libx264.  Probing takes up to seconds,
// so the result is cached per process and the first call should happen off
// the loop thread (thread pool or media thread).
#pragma once

#include "core/log.hpp"

#include <nlohmann/json_fwd.hpp>

extern "C" {
#include <libavutil/pixfmt.h>
#include <libavutil/rational.h>
}

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct AVCodecContext;
struct AVBufferRef;
struct AVFrame;

namespace openace::media {

struct EncoderCandidate {
    std::string name;   // "h264_nvenc"
    std::string device; // "cuda"
    bool ok = false;
    std::string reason; // why it was rejected (empty when ok)
};

struct EncoderSelection {
    bool hardware_acceleration = false;
    std::string selected;    // "libx264", "h264_vaapi", … ; empty when nothing works
    std::string device;      // hardware device type of `selected`; empty for software
    std::vector<EncoderCandidate> candidates; // hardware candidates, in probe order
    std::string error;       // why nothing was selected (selected empty)
    double probe_ms = 0;
};

// {"hardware_acceleration","selected","device"?,"candidates":[{"name","device","ok","reason"?}],
//  "error"?,"probe_ms"} — what the probe job reports.
nlohmann::json to_json(const EncoderSelection &s);

// Probes once per process and per flag value, then returns the cached
// result.  Thread-safe; blocks while another thread probes.  Logs the choice
// and every rejected candidate with its reason when it probes.
const EncoderSelection &select_h264_encoder(bool hardware_acceleration, const core::Logger &log);

// Probes without the cache (used by select_h264_encoder and tests).
// skip_reason: report every hardware candidate as skipped with this reason
// instead of probing it (hardware_acceleration false uses
// "skipped: streaming.hardware_acceleration is false").
EncoderSelection probe_h264_encoders(bool hardware_acceleration, const char *skip_reason = nullptr);

// True for the software encoder names this module knows.
bool is_software_encoder(const std::string &name);

// What an H.264 encoder session is opened with.
struct EncoderConfig {
    int width = 0;
    int height = 0;
    AVRational time_base{1, 90000}; // of the frames' pts (and the packets')
    AVRational framerate{25, 1};    // nominal, for rate control
    int64_t bitrate = 0;            // bits per second
    int gop = 250;                  // most frames between two keyframes
    std::string preset = "veryfast"; // libx264 preset
    bool b_frames = true;           // false: dts == pts (used after a fallback)
    int threads = 0;                // 0 = the encoder decides
};

// An open encoder and the hardware contexts it needs.  Frames given to
// encode() must be `input_format` at the configured size; they are uploaded
// to the device first when the encoder wants hardware frames.
class EncoderSession {
public:
    ~EncoderSession();
    EncoderSession(const EncoderSession &) = delete;
    EncoderSession &operator=(const EncoderSession &) = delete;

    // Opens `name` with `cfg`; nullptr and `reason` set when it cannot.
    static std::unique_ptr<EncoderSession> open(const std::string &name, const EncoderConfig &cfg,
                                                std::string &reason);

    AVCodecContext *ctx() const noexcept { return ctx_; }
    const std::string &name() const noexcept { return name_; }
    bool hardware() const noexcept { return hardware_; }
    AVPixelFormat input_format() const noexcept { return input_format_; }

    // avcodec_send_frame (nullptr flushes), uploading first when needed.
    // Returns the FFmpeg error code.
    int send(const AVFrame *frame);

private:
    EncoderSession() = default;
    std::string name_;
    bool hardware_ = false;
    AVCodecContext *ctx_ = nullptr;
    AVBufferRef *device_ = nullptr;
    AVBufferRef *frames_ = nullptr; // set when frames must be uploaded
    AVFrame *upload_ = nullptr;
    AVPixelFormat input_format_ = AV_PIX_FMT_YUV420P;
};

} // namespace openace::media
