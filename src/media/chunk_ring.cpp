// ChunkRing: see chunk_ring.hpp.  Core-side, no FFmpeg.
#include "media/chunk_ring.hpp"

#include <algorithm>
#include <utility>

namespace openace::media {

struct ChunkRing::State {
    Options opts;
    std::deque<Chunk> chunks;              // ascending seq
    size_t bytes = 0;
    double duration = 0;                   // sum of duration_s
    bool closed = false;
    uint64_t evicted_end = 0;              // one past the highest evicted seq
    std::vector<std::weak_ptr<Reader>> readers;

    // First chunk with seq >= s (chunks.end() when none).
    std::deque<Chunk>::const_iterator at_or_after(uint64_t s) const
    {
        return std::lower_bound(chunks.begin(), chunks.end(), s,
                                [](const Chunk& c, uint64_t v) { return c.seq < v; });
    }

    void prune_readers()
    {
        std::erase_if(readers, [](const std::weak_ptr<Reader>& w) { return w.expired(); });
    }

    void pop_front()
    {
        evicted_end = chunks.front().seq + 1;
        bytes -= chunks.front().size();
        duration -= chunks.front().duration_s;
        chunks.pop_front();
        if (chunks.empty()) duration = 0; // no float drift
    }

    void evict()
    {
        while (chunks.size() > 1 &&
               (duration - chunks.front().duration_s >= opts.window_seconds || bytes > opts.max_bytes))
            pop_front();
    }

    // Fires armed callbacks of readers that have something, or all on close.
    void notify()
    {
        std::vector<std::shared_ptr<Reader>> ready;
        for (auto& w : readers)
            if (auto r = w.lock(); r && r->ready_cb_ && (closed || r->available()))
                ready.push_back(std::move(r));
        for (auto& r : ready) {
            auto cb = std::exchange(r->ready_cb_, nullptr); // one-shot; cb may re-arm
            if (cb) cb();
        }
    }
};

ChunkRing::ChunkRing(Options o) : state_(std::make_shared<State>())
{
    state_->opts = o;
}

ChunkRing::~ChunkRing()
{
    close();
}

void ChunkRing::push(Chunk c)
{
    auto& s = *state_;
    if (s.closed) return;
    if (!s.chunks.empty() && c.seq <= s.chunks.back().seq) return;
    s.bytes += c.size();
    s.duration += c.duration_s;
    s.chunks.push_back(std::move(c));
    s.evict();
    s.prune_readers();
    s.notify();
}

void ChunkRing::close()
{
    if (state_->closed) return;
    state_->closed = true;
    state_->prune_readers();
    state_->notify();
}

uint64_t ChunkRing::first_seq() const
{
    return state_->chunks.empty() ? 0 : state_->chunks.front().seq;
}

uint64_t ChunkRing::last_seq() const
{
    return state_->chunks.empty() ? 0 : state_->chunks.back().seq;
}

size_t ChunkRing::size() const { return state_->chunks.size(); }
size_t ChunkRing::bytes() const { return state_->bytes; }
bool ChunkRing::closed() const { return state_->closed; }

std::shared_ptr<ChunkRing::Reader> ChunkRing::attach(std::optional<uint64_t> from_seq)
{
    auto& s = *state_;
    uint64_t pos = from_seq.value_or(0);
    bool need_keyframe = true;
    if (!from_seq) {
        // The newest keyframe chunk.
        auto it = std::find_if(s.chunks.rbegin(), s.chunks.rend(), [](const Chunk& c) { return c.keyframe; });
        if (it != s.chunks.rend()) {
            pos = it->seq;
            need_keyframe = false;
        }
    } else {
        // The first keyframe chunk at or after from_seq.
        auto it = std::find_if(s.at_or_after(pos), s.chunks.cend(), [](const Chunk& c) { return c.keyframe; });
        if (it != s.chunks.cend()) {
            pos = it->seq;
            need_keyframe = false;
        }
    }
    // With none held: wait for the first keyframe chunk to come.
    if (need_keyframe && !s.chunks.empty()) pos = std::max(pos, s.chunks.back().seq + 1);
    auto r = std::make_shared<Reader>(state_, pos, need_keyframe, Private{});
    s.prune_readers();
    s.readers.push_back(r);
    return r;
}

size_t ChunkRing::readers() const
{
    return static_cast<size_t>(std::count_if(state_->readers.begin(), state_->readers.end(),
                                             [](const std::weak_ptr<Reader>& w) { return !w.expired(); }));
}

ChunkRing::Reader::Reader(std::shared_ptr<State> s, uint64_t pos, bool need_keyframe, Private)
    : state_(std::move(s)), pos_(pos), need_keyframe_(need_keyframe)
{
}

bool ChunkRing::Reader::available() const
{
    const auto& s = *state_;
    if (s.chunks.empty()) return false;
    // Fallen out of the window: it resumes at a keyframe, as when joining.
    bool need_kf = need_keyframe_ || pos_ < s.evicted_end;
    auto it = s.at_or_after(pos_);
    if (!need_kf) return it != s.chunks.end();
    return std::any_of(it, s.chunks.cend(), [](const Chunk& c) { return c.keyframe; });
}

std::optional<Chunk> ChunkRing::Reader::next()
{
    const auto& s = *state_;
    if (s.chunks.empty()) return std::nullopt;
    if (pos_ < s.evicted_end) {
        if (!need_keyframe_) {
            // Its next chunk was evicted: skip to a keyframe, mark the jump.
            lost_ = true;
            need_keyframe_ = true;
        }
        if (lost_) skipped_ += s.evicted_end - pos_;
        pos_ = s.evicted_end;
    }
    auto it = s.at_or_after(pos_);
    if (need_keyframe_) {
        auto kf = std::find_if(it, s.chunks.cend(), [](const Chunk& c) { return c.keyframe; });
        // Chunks passed over while looking for a keyframe are lost only to a
        // reader that fell behind; a joining reader never had them.
        uint64_t to = kf != s.chunks.cend() ? kf->seq : s.chunks.back().seq + 1;
        if (lost_ && to > pos_) skipped_ += to - pos_;
        pos_ = std::max(pos_, to);
        if (kf == s.chunks.cend()) return std::nullopt;
        it = kf;
    }
    if (it == s.chunks.cend()) return std::nullopt;
    Chunk c = *it;
    if (lost_) c.discontinuity = true;
    lost_ = false;
    need_keyframe_ = false;
    pos_ = c.seq + 1;
    return c;
}

bool ChunkRing::Reader::ended() const
{
    return state_->closed && !available();
}

void ChunkRing::Reader::on_ready(std::function<void()> cb)
{
    ready_cb_ = std::move(cb);
}

uint64_t ChunkRing::Reader::skipped() const { return skipped_; }
uint64_t ChunkRing::Reader::position() const { return pos_; }

} // namespace openace::media
