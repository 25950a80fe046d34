// ChunkRing: a window of recent chunks of one rendition, read by any number
// of readers (progressive MPEG-TS to players, DESIGN §2).  Core-side: no
// FFmpeg.  Loop thread only (DESIGN §3): no locks.  The segmenter pushes,
// HTTP responses read; the ring never waits for a slow reader.
#pragma once

#include "media/chunk.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace openace::media {

class ChunkRing {
public:
    struct Options {
        // Chunks whose end lies more than window_seconds (sum of duration_s)
        // before the newest chunk's end are evicted.
        double window_seconds = 30;
        // Evict oldest first while the ring holds more bytes than this.  The
        // newest chunk is always kept, even when it alone is larger.
        size_t max_bytes = 64u << 20;
    };

    class Reader;

    explicit ChunkRing(Options o);
    ~ChunkRing();                          // close(): readers end after draining what they hold
    ChunkRing(const ChunkRing&) = delete;
    ChunkRing& operator=(const ChunkRing&) = delete;

    // Appends a chunk, then evicts (oldest first) chunks older than the window
    // or over max_bytes, then fires the armed on_ready callbacks of readers
    // that now have something.  A chunk whose seq is not above last_seq(), or
    // a push after close(), is ignored.
    void push(Chunk c);
    // Source ended: readers get end-of-stream after the last chunk.  Fires
    // every armed on_ready callback.  Idempotent.
    void close();

    uint64_t first_seq() const;            // 0 when empty
    uint64_t last_seq() const;             // 0 when empty
    size_t size() const;                   // chunks held
    size_t bytes() const;                  // sum of Chunk::size()
    bool closed() const;

    // A reader joins at a chunk boundary: the newest chunk with
    // keyframe=true, or with from_seq the first keyframe chunk at/after it.
    // With none yet, it waits for the first keyframe chunk to come.  The
    // ring keeps only a weak reference: dropping the handle detaches.
    std::shared_ptr<Reader> attach(std::optional<uint64_t> from_seq = std::nullopt);
    size_t readers() const;                // live reader handles

private:
    struct State;
    struct Private { explicit Private() = default; }; // attach-only constructor tag
    std::shared_ptr<State> state_;         // shared with readers
};

class ChunkRing::Reader {
public:
    // The next chunk in order, or nullopt when none is available yet (or
    // ended: see ended()).  After falling out of the window the reader skips
    // forward to the oldest keyframe chunk still held; that chunk comes back
    // with discontinuity=true.
    std::optional<Chunk> next();
    // Ring closed (or destroyed) and everything reachable read.
    bool ended() const;
    // One-shot: called on the loop thread from push()/close() when next()
    // would return something (or the ring closed).  Re-arm after use.  It is
    // not called for chunks that were already available when armed: drain
    // next() until nullopt first, then arm.
    void on_ready(std::function<void()> cb);
    // Chunks lost because this reader fell out of the window.
    uint64_t skipped() const;
    // Seq of the next chunk it will get (while waiting for a keyframe: the
    // lowest seq it may start at).
    uint64_t position() const;

    // Made by ChunkRing::attach only (the tag is private to ChunkRing).
    Reader(std::shared_ptr<State> s, uint64_t pos, bool need_keyframe, Private);

private:
    friend class ChunkRing;
    bool available() const;                // next() would return a chunk

    std::shared_ptr<State> state_;
    uint64_t pos_ = 0;
    bool need_keyframe_ = true;            // next chunk must be a keyframe
    bool lost_ = false;                    // fell out of the window: count skips, mark discontinuity
    uint64_t skipped_ = 0;
    std::function<void()> ready_cb_;
};

} // namespace openace::media
