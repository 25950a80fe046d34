// HLS (RFC 8216) from chunks: a live playlist served from memory and a VOD
// writer to a directory.  Segments are whole chunks grouped up to the
// segment duration (a chunk is never split), so every segment begins with
// PAT, PMT and a keyframe like the chunk it starts with.
#pragma once

#include "media/chunk.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace openace::media {

// One media segment of a playlist.
struct HlsSegment {
    uint64_t seq = 0;        // media sequence number
    double duration_s = 0;   // EXTINF
    int64_t pdt_ms = 0;      // EXT-X-PROGRAM-DATE-TIME, Unix ms
    bool discontinuity = false; // preceded by EXT-X-DISCONTINUITY
    uint64_t dseq = 0;       // its discontinuity sequence number
    std::vector<Chunk> chunks;
    size_t bytes = 0;
    std::string uri;
};

// Groups chunks (in order) into segments: a segment closes once it reaches
// the segment duration, when the next chunk would push it past that, or in
// front of a discontinuity.  Shared by the live playlist and the VOD writer.
class SegmentGrouper {
public:
    explicit SegmentGrouper(double segment_duration) : target_(segment_duration) {}
    // Adds a chunk; returns the segments it completed (zero, one or two).
    std::vector<HlsSegment> add(Chunk c);
    // Closes the open segment, if any.
    std::vector<HlsSegment> flush();

private:
    void close(std::vector<HlsSegment> &out);
    double target_;
    HlsSegment open_;
    bool has_open_ = false;
};

// Live playlist: a sliding window over the newest segments.
//  - EXT-X-TARGETDURATION is fixed at construction: ceil(max_segment_duration).
//  - EXT-X-MEDIA-SEQUENCE only grows; a segment keeps its number and URI.
//  - the window holds at least `window` seconds (>= 3 target durations): a
//    segment leaves only when the rest still covers it.
//  - every segment has EXT-X-PROGRAM-DATE-TIME: the first chunk's wall
//    clock at a (dis)continuity start, then advanced by EXTINF so the two
//    never disagree.
//  - a chunk flagged discontinuity starts a segment with EXT-X-DISCONTINUITY;
//    EXT-X-DISCONTINUITY-SEQUENCE counts those that left the window.
// Loop thread only (no locks); playlist() text is rebuilt on change.
class LivePlaylist {
public:
    struct Options {
        double segment_duration = 2.0; // group chunks up to this long
        // EXT-X-TARGETDURATION = ceil(max(segment_duration, max_segment_duration)).
        // A segment longer than that (one chunk with a very late keyframe)
        // still goes out and is counted in overlong().
        double max_segment_duration = 0;
        double window = 0;            // seconds; raised to 3 target durations at least
        std::string uri_prefix;       // segment URI = prefix + media sequence + suffix
        std::string uri_suffix = ".ts";
        // Segments that left the window stay retrievable for this long
        // (RFC 8216 6.2.2); 0 = the window's duration.
        double keep_removed = 0;
    };

    explicit LivePlaylist(Options options);

    void add(Chunk c);
    // The stream ended: close the open segment and add EXT-X-ENDLIST.
    void end();

    const std::string &playlist() const noexcept { return text_; }
    // A segment in the window or one that left it recently; nullptr if gone.
    const HlsSegment *segment(uint64_t seq) const noexcept;
    // Its bytes: the chunks concatenated.
    static std::string segment_data(const HlsSegment &s);

    int target_duration() const noexcept { return target_; }
    uint64_t media_sequence() const noexcept;
    uint64_t discontinuity_sequence() const noexcept;
    size_t size() const noexcept { return window_.size(); }
    double window_duration() const noexcept { return window_s_; }
    uint64_t overlong() const noexcept { return overlong_; }
    bool ended() const noexcept { return ended_; }

private:
    void push(HlsSegment s);
    void render();

    Options opts_;
    int target_;
    double min_window_s_;
    SegmentGrouper grouper_;
    std::deque<HlsSegment> window_, removed_;
    double window_s_ = 0, removed_s_ = 0;
    uint64_t next_seq_ = 0, dseq_ = 0, overlong_ = 0;
    bool has_last_ = false;
    int64_t next_pdt_ms_ = 0;
    bool ended_ = false;
    std::string text_;
};

// VOD HLS to a directory (one rendition): segment files and a playlist,
// each written whole to a temporary file and renamed into place, so a
// reader never sees a partial file.  The playlist is written by finish()
// with EXT-X-PLAYLIST-TYPE:VOD and EXT-X-ENDLIST (and, with
// progressive_playlist, after each segment without them).  Used by the
// segment job and, per rendition, by the transcoder.  Called from one
// thread; with background_writes, segment files are written by a thread of
// its own (at most two segments queued) so disk writes overlap the muxing.
class VodWriter {
public:
    struct Options {
        std::string dir;                    // created (with parents) if missing
        std::string playlist = "index.m3u8";
        std::string segment_prefix = "segment_"; // files: prefix + 5 digits + ".ts"
        double segment_duration = 6.0;      // group chunks up to this long
        bool progressive_playlist = false;
        bool background_writes = false;
    };

    // Throws Error(IO) naming the directory when it cannot be created.
    explicit VodWriter(Options options);
    // Without finish(): segments still queued are dropped, no playlist.
    ~VodWriter();
    VodWriter(const VodWriter &) = delete;
    VodWriter &operator=(const VodWriter &) = delete;

    // Throws Error(IO) naming the file on a write failure (with
    // background_writes: the failure of an earlier segment).
    void add(Chunk c);
    // Last segment + final playlist.  Idempotent.
    void finish();

    size_t segments() const noexcept { return entries_.size(); }
    double duration_s() const noexcept { return duration_s_; }
    uint64_t bytes() const noexcept { return bytes_; }
    int target_duration() const noexcept;
    // Bits per second: the largest segment's and the whole stream's (for
    // EXT-X-STREAM-INF BANDWIDTH / AVERAGE-BANDWIDTH).
    uint64_t peak_bandwidth() const noexcept { return peak_bps_; }
    uint64_t average_bandwidth() const noexcept;
    std::string playlist_path() const;
    const std::string &dir() const noexcept { return opts_.dir; }

    // The playlist text for the segments so far (final: VOD + ENDLIST).
    std::string render(bool final) const;

private:
    struct Entry {
        std::string file;
        double duration_s;
        bool discontinuity;
    };
    struct Job {
        std::string path;
        std::vector<Chunk> chunks;
    };
    void write_segment(HlsSegment &s);
    void write_job(const Job &j);
    void writer_main();
    void drain_writer(bool abandon);
    void rethrow_writer_error();

    Options opts_;
    // Background writer (background_writes).
    std::thread writer_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> jobs_;
    bool closing_ = false, abandon_ = false;
    std::exception_ptr writer_error_;
    SegmentGrouper grouper_;
    std::vector<Entry> entries_;
    double duration_s_ = 0;
    uint64_t bytes_ = 0, peak_bps_ = 0;
    bool finished_ = false;
};

// Writes `parts` concatenated to `path` through `path.tmp` + rename, with
// one writev.  Throws Error(IO) naming the path.
void write_file_atomic(const std::string &path, const std::vector<std::string_view> &parts);

} // namespace openace::media
