#include "streamer/vod_hls.hpp"

#include "core/error.hpp"
#include "core/file_read.hpp"
#include "engine/engine_manager.hpp"

#include <charconv>
#include <filesystem>
#include <sstream>

namespace openace::streamer {

namespace {

namespace fs = std::filesystem;
constexpr std::size_t kMaxPlaylist = 4u << 20;
constexpr std::size_t kMaxSegment = 64u << 20;

bool read_file(const fs::path &p, std::size_t max, std::string &out)
{
    return core::read_file(p.string(), max, out).status == core::FileRead::Status::Ok;
}

} // namespace

VodHls::VodHls(engine::EngineContext &ctx, core::Logger log, std::string source_url, std::string uri_prefix,
               const std::string &name)
    : ctx_(ctx), log_(std::move(log)), uri_prefix_(std::move(uri_prefix))
{
    const std::string &state = ctx_.config->engine.state_dir;
    if (state.empty())
        throw_error(Errc::STATE, "streamer", "hls", "no state directory (engine.state_dir) for HLS segments");
    dir_ = (fs::path(state) / "hls" / name).string();
    std::error_code ec;
    fs::remove_all(dir_, ec); // segments of an earlier session
    // FFmpeg probes the format: the file may be MP4, MKV, TS...
    nlohmann::json spec = {{"type", "segment"},      {"input", source_url}, {"output_dir", dir_},
                           {"segment_duration", 4.0}, {"progressive", true}};
    job_ = ctx_.manager->jobs().submit(spec.dump());
    log_.info("HLS of {} by segment job {} into {}", source_url, job_, dir_);
}

VodHls::~VodHls()
{
    try {
        ctx_.manager->jobs().cancel(job_);
    } catch (const Error &) {
        // it ended already
    }
    // The job's thread may still be writing: it stops at its next packet;
    // the folder goes once it is gone (or with the next session's start).
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

bool VodHls::ready() const
{
    std::error_code ec;
    const auto size = fs::file_size(fs::path(dir_) / "index.m3u8", ec);
    return !ec && size > 0;
}

void VodHls::serve_playlist(const std::shared_ptr<net::HttpResponse> &res, const std::string &suffix)
{
    std::string text;
    if (!read_file(fs::path(dir_) / "index.m3u8", kMaxPlaylist, text) || text.empty()) {
        res->send(503, "application/json",
                  R"({"response":null,"error":"the first segments are being prepared, retry"})",
                  {{"Retry-After", "1"}});
        return;
    }
    // segment_00012.ts -> <prefix>12.ts
    std::istringstream in(text);
    std::string out, line;
    std::size_t n = 0;
    const bool growing = text.find("#EXT-X-ENDLIST") == std::string::npos;
    while (std::getline(in, line)) {
        if (growing && line == "#EXT-X-MEDIA-SEQUENCE:0")
            line += "\n#EXT-X-PLAYLIST-TYPE:EVENT"; // segments are only added until ENDLIST
        if (line.rfind("segment_", 0) == 0 && line.size() > 11 && line.compare(line.size() - 3, 3, ".ts") == 0) {
            std::size_t seq = 0;
            std::from_chars(line.data() + 8, line.data() + line.size() - 3, seq);
            line = uri_prefix_ + std::to_string(seq) + ".ts" + suffix;
            ++n;
        }
        out += line;
        out += '\n';
    }
    segments_ = n;
    res->send(200, "application/vnd.apple.mpegurl", std::move(out), {{"Cache-Control", "no-cache"}});
}

void VodHls::serve_segment(const std::string &name, const std::shared_ptr<net::HttpResponse> &res)
{
    std::size_t seq = 0;
    auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), seq);
    std::string data;
    if (ec != std::errc() || std::string_view(p) != ".ts" || seq >= segments_ ||
        !read_file(fs::path(dir_) / fmt::format("segment_{:05}.ts", seq), kMaxSegment, data)) {
        res->send(404, "application/json", R"({"response":null,"error":"no such segment"})");
        return;
    }
    res->send(200, "video/mp2t", std::move(data));
}

} // namespace openace::streamer
