#include "media/hls.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace openace::media {

namespace {

// A segment may overshoot the grouping target by this much rather than be
// cut short (chunk durations jitter around their own target).
double tolerance(double target)
{
    return std::min(0.1 * target, 0.25);
}

// EXT-X-TARGETDURATION for a longest segment of d seconds: an integer that
// no EXTINF exceeds (RFC 8216 4.3.3.1), ignoring sub-millisecond noise.
int target_for(double d)
{
    return std::max(1, int(std::ceil(d - 0.001)));
}

void append_extinf(std::string &out, double d)
{
    out += fmt::format("#EXTINF:{:.3f},\n", d);
}

} // namespace

// ---------------------------------------------------------------- grouping

void SegmentGrouper::close(std::vector<HlsSegment> &out)
{
    if (!has_open_)
        return;
    out.push_back(std::move(open_));
    open_ = HlsSegment{};
    has_open_ = false;
}

std::vector<HlsSegment> SegmentGrouper::add(Chunk c)
{
    std::vector<HlsSegment> out;
    double tol = tolerance(target_);
    if (has_open_ && (c.discontinuity || open_.duration_s + c.duration_s > target_ + tol))
        close(out);
    if (!has_open_) {
        has_open_ = true;
        open_.discontinuity = c.discontinuity;
    }
    open_.duration_s += c.duration_s;
    open_.bytes += c.size();
    open_.chunks.push_back(std::move(c));
    if (open_.duration_s >= target_ - tol)
        close(out);
    return out;
}

std::vector<HlsSegment> SegmentGrouper::flush()
{
    std::vector<HlsSegment> out;
    close(out);
    return out;
}

// ---------------------------------------------------------------- live

LivePlaylist::LivePlaylist(Options options)
    : opts_(std::move(options)),
      target_(target_for(std::max(opts_.segment_duration, opts_.max_segment_duration))),
      min_window_s_(std::max(opts_.window, 3.0 * target_)), grouper_(opts_.segment_duration)
{
    if (opts_.keep_removed <= 0)
        opts_.keep_removed = min_window_s_;
    render();
}

void LivePlaylist::add(Chunk c)
{
    if (ended_)
        return;
    for (auto &s : grouper_.add(std::move(c)))
        push(std::move(s));
}

void LivePlaylist::end()
{
    if (ended_)
        return;
    for (auto &s : grouper_.flush())
        push(std::move(s));
    ended_ = true;
    render();
}

void LivePlaylist::push(HlsSegment s)
{
    s.seq = next_seq_++;
    s.uri = opts_.uri_prefix + std::to_string(s.seq) + opts_.uri_suffix;
    bool new_timeline = !has_last_ || s.discontinuity;
    if (s.discontinuity && has_last_)
        ++dseq_;
    s.dseq = dseq_;
    s.pdt_ms = new_timeline ? s.chunks.front().wall_clock_ms : next_pdt_ms_;
    next_pdt_ms_ = s.pdt_ms + int64_t(std::llround(s.duration_s * 1000));
    has_last_ = true;
    if (std::lround(s.duration_s) > target_)
        ++overlong_;
    window_s_ += s.duration_s;
    window_.push_back(std::move(s));
    // Slide: drop the oldest only while the rest still spans the minimum.
    while (window_.size() > 1 && window_s_ - window_.front().duration_s >= min_window_s_) {
        window_s_ -= window_.front().duration_s;
        removed_s_ += window_.front().duration_s;
        removed_.push_back(std::move(window_.front()));
        window_.pop_front();
    }
    while (!removed_.empty() && removed_s_ - removed_.front().duration_s >= opts_.keep_removed) {
        removed_s_ -= removed_.front().duration_s;
        removed_.pop_front();
    }
    render();
}

uint64_t LivePlaylist::media_sequence() const noexcept
{
    return window_.empty() ? next_seq_ : window_.front().seq;
}

uint64_t LivePlaylist::discontinuity_sequence() const noexcept
{
    return window_.empty() ? dseq_ : window_.front().dseq;
}

const HlsSegment *LivePlaylist::segment(uint64_t seq) const noexcept
{
    for (auto *q : {&window_, &removed_}) {
        if (q->empty() || seq < q->front().seq || seq > q->back().seq)
            continue;
        return &(*q)[size_t(seq - q->front().seq)];
    }
    return nullptr;
}

std::string LivePlaylist::segment_data(const HlsSegment &s)
{
    std::string out;
    out.reserve(s.bytes);
    for (auto &c : s.chunks)
        if (c.data)
            out += *c.data;
    return out;
}

void LivePlaylist::render()
{
    std::string t;
    t.reserve(128 + window_.size() * (opts_.uri_prefix.size() + 96));
    t += "#EXTM3U\n#EXT-X-VERSION:3\n";
    t += fmt::format("#EXT-X-TARGETDURATION:{}\n", target_);
    t += fmt::format("#EXT-X-MEDIA-SEQUENCE:{}\n", media_sequence());
    t += fmt::format("#EXT-X-DISCONTINUITY-SEQUENCE:{}\n", discontinuity_sequence());
    t += "#EXT-X-INDEPENDENT-SEGMENTS\n";
    bool first = true;
    for (auto &s : window_) {
        // The first segment's own discontinuity is already counted in
        // EXT-X-DISCONTINUITY-SEQUENCE.
        if (s.discontinuity && !first)
            t += "#EXT-X-DISCONTINUITY\n";
        first = false;
        t += "#EXT-X-PROGRAM-DATE-TIME:" + core::format_log_time(s.pdt_ms) + "\n";
        append_extinf(t, s.duration_s);
        t += s.uri;
        t += '\n';
    }
    if (ended_)
        t += "#EXT-X-ENDLIST\n";
    text_ = std::move(t);
}

// ---------------------------------------------------------------- files

void write_file_atomic(const std::string &path, const std::vector<std::string_view> &parts)
{
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw_errorf(Errc::IO, "segmenter", "write", "cannot create '{}': {}", tmp, std::strerror(errno));
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    for (auto p : parts)
        if (!p.empty())
            iov.push_back(iovec{const_cast<char *>(p.data()), p.size()});
    size_t i = 0;
    while (i < iov.size()) {
        ssize_t n = ::writev(fd, &iov[i], int(std::min<size_t>(iov.size() - i, IOV_MAX)));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw_errorf(Errc::IO, "segmenter", "write", "cannot write '{}': {}", tmp, std::strerror(err));
        }
        // Skip what was written; a partial write continues mid-buffer.
        size_t left = size_t(n);
        while (i < iov.size() && left >= iov[i].iov_len)
            left -= iov[i++].iov_len;
        if (left) {
            iov[i].iov_base = static_cast<char *>(iov[i].iov_base) + left;
            iov[i].iov_len -= left;
        }
    }
    if (::close(fd) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw_errorf(Errc::IO, "segmenter", "write", "cannot write '{}': {}", tmp, std::strerror(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw_errorf(Errc::IO, "segmenter", "write", "cannot rename '{}' to '{}': {}", tmp, path,
                     std::strerror(err));
    }
}

// ---------------------------------------------------------------- VOD

VodWriter::VodWriter(Options options) : opts_(std::move(options)), grouper_(opts_.segment_duration)
{
    if (opts_.dir.empty())
        throw_error(Errc::IO, "segmenter", "write", "no output directory given");
    std::error_code ec;
    std::filesystem::create_directories(opts_.dir, ec);
    if (ec || !std::filesystem::is_directory(opts_.dir))
        throw_errorf(Errc::IO, "segmenter", "write", "cannot create output directory '{}': {}", opts_.dir,
                     ec ? ec.message() : "not a directory");
}

std::string VodWriter::playlist_path() const
{
    return (std::filesystem::path(opts_.dir) / opts_.playlist).string();
}

int VodWriter::target_duration() const noexcept
{
    double longest = 0;
    for (auto &e : entries_)
        longest = std::max(longest, e.duration_s);
    return target_for(std::max(longest, entries_.empty() ? opts_.segment_duration : 0.0));
}

uint64_t VodWriter::average_bandwidth() const noexcept
{
    return duration_s_ > 0 ? uint64_t(double(bytes_) * 8 / duration_s_) : 0;
}

VodWriter::~VodWriter()
{
    drain_writer(true);
}

void VodWriter::add(Chunk c)
{
    if (finished_)
        return;
    rethrow_writer_error();
    for (auto &s : grouper_.add(std::move(c)))
        write_segment(s);
}

void VodWriter::write_job(const Job &j)
{
    std::vector<std::string_view> parts;
    parts.reserve(j.chunks.size());
    for (auto &c : j.chunks)
        if (c.data)
            parts.emplace_back(*c.data);
    write_file_atomic(j.path, parts);
}

void VodWriter::writer_main()
{
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return !jobs_.empty() || closing_; });
            if (jobs_.empty() || abandon_ || writer_error_)
                return;
            job = std::move(jobs_.front());
        }
        std::exception_ptr err;
        try {
            write_job(job);
        } catch (...) {
            err = std::current_exception();
        }
        job.chunks.clear(); // buffers go back to their chunker now
        std::lock_guard lock(mu_);
        jobs_.pop_front();
        if (err)
            writer_error_ = err;
        cv_.notify_all();
        if (err)
            return;
    }
}

void VodWriter::drain_writer(bool abandon)
{
    if (!writer_.joinable())
        return;
    {
        std::lock_guard lock(mu_);
        closing_ = true;
        abandon_ = abandon;
        cv_.notify_all();
    }
    writer_.join();
}

void VodWriter::rethrow_writer_error()
{
    std::lock_guard lock(mu_);
    if (writer_error_)
        std::rethrow_exception(writer_error_);
}

void VodWriter::write_segment(HlsSegment &s)
{
    std::string file = fmt::format("{}{:05}.ts", opts_.segment_prefix, entries_.size());
    Job job{(std::filesystem::path(opts_.dir) / file).string(), std::move(s.chunks)};
    if (opts_.background_writes) {
        std::unique_lock lock(mu_);
        if (!writer_.joinable())
            writer_ = std::thread([this] { writer_main(); });
        // At most two segments wait: memory stays bounded when the disk is
        // slower than the source.
        cv_.wait(lock, [&] { return jobs_.size() < 2 || writer_error_; });
        if (writer_error_)
            std::rethrow_exception(writer_error_);
        jobs_.push_back(std::move(job));
        cv_.notify_all();
    } else {
        write_job(job);
    }
    entries_.push_back(Entry{file, s.duration_s, s.discontinuity && !entries_.empty()});
    duration_s_ += s.duration_s;
    bytes_ += s.bytes;
    if (s.duration_s > 0)
        peak_bps_ = std::max(peak_bps_, uint64_t(double(s.bytes) * 8 / s.duration_s));
    if (opts_.progressive_playlist) {
        // The playlist names only segments that are on disk.
        drain_writer(false);
        rethrow_writer_error();
        closing_ = false;
        std::string text = render(false);
        write_file_atomic(playlist_path(), {text});
    }
}

std::string VodWriter::render(bool final) const
{
    std::string t;
    t.reserve(160 + entries_.size() * (opts_.segment_prefix.size() + 40));
    t += "#EXTM3U\n#EXT-X-VERSION:3\n";
    t += fmt::format("#EXT-X-TARGETDURATION:{}\n", target_duration());
    t += "#EXT-X-MEDIA-SEQUENCE:0\n";
    if (final)
        t += "#EXT-X-PLAYLIST-TYPE:VOD\n";
    t += "#EXT-X-INDEPENDENT-SEGMENTS\n";
    for (auto &e : entries_) {
        if (e.discontinuity)
            t += "#EXT-X-DISCONTINUITY\n";
        append_extinf(t, e.duration_s);
        t += e.file;
        t += '\n';
    }
    if (final)
        t += "#EXT-X-ENDLIST\n";
    return t;
}

void VodWriter::finish()
{
    if (finished_)
        return;
    for (auto &s : grouper_.flush())
        write_segment(s);
    drain_writer(false);
    rethrow_writer_error();
    finished_ = true;
    std::string text = render(true);
    write_file_atomic(playlist_path(), {text});
}

} // namespace openace::media
