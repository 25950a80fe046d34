// The sliding window of a live swarm (docs/protocol.md §4): the verified
// pieces a peer keeps in memory, and sets of sequence numbers (what each
// neighbour holds) as ranges.  Loop thread; no locks.
#pragma once

#include "live/live_piece.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace openace::live {

using SeqRange = std::pair<std::uint64_t, std::uint64_t>; // inclusive

// A set of sequence numbers kept as disjoint inclusive ranges.  Bounded:
// beyond max_ranges the oldest ranges are dropped (a neighbour's old haves
// matter least).
class SeqRanges {
public:
    explicit SeqRanges(std::size_t max_ranges = 1024) : max_ranges_(max_ranges) {}
    void insert(std::uint64_t seq) { insert(seq, seq); }
    void insert(std::uint64_t first, std::uint64_t last); // first <= last
    bool contains(std::uint64_t seq) const;
    // Forgets every number below `floor`.
    void erase_below(std::uint64_t floor);
    void clear() { ranges_.clear(); }
    bool empty() const noexcept { return ranges_.empty(); }
    std::optional<std::uint64_t> newest() const;
    // Up to `max` ranges, ascending; the newest ones when there are more.
    std::vector<SeqRange> ranges(std::size_t max = SIZE_MAX) const;
    std::size_t range_count() const noexcept { return ranges_.size(); }

private:
    std::map<std::uint64_t, std::uint64_t> ranges_; // first -> last
    std::size_t max_ranges_;
};

class LiveWindow {
public:
    // Keeps at most `max_pieces` sequence numbers behind the newest (the
    // window) and at most `max_bytes` of data (oldest dropped first).
    LiveWindow(std::uint64_t max_pieces, std::size_t max_bytes);

    // Adds a verified piece.  False when it is already held or older than
    // the window's floor (nothing changes), or when the byte cap dropped it
    // at once (an old piece: the floor moved past it).  Advancing the newest
    // drops pieces that fall out of the window.
    bool add(std::shared_ptr<const LivePiece> p);
    std::shared_ptr<const LivePiece> get(std::uint64_t seq) const;
    bool has(std::uint64_t seq) const { return pieces_.count(seq) != 0; }
    std::optional<std::uint64_t> newest() const;
    std::optional<std::uint64_t> oldest() const;
    // The lowest sequence still accepted: newest - max_pieces + 1, or higher
    // when the byte cap dropped older pieces.
    std::uint64_t floor() const noexcept { return floor_; }
    std::uint64_t max_pieces() const noexcept { return max_pieces_; }
    std::size_t size() const noexcept { return pieces_.size(); }
    std::size_t bytes() const noexcept { return bytes_; }
    const SeqRanges &held() const noexcept { return held_; }

private:
    void drop(std::map<std::uint64_t, std::shared_ptr<const LivePiece>>::iterator it);

    std::uint64_t max_pieces_;
    std::size_t max_bytes_;
    std::uint64_t floor_ = 0;
    std::size_t bytes_ = 0;
    std::map<std::uint64_t, std::shared_ptr<const LivePiece>> pieces_;
    SeqRanges held_{SIZE_MAX};
};

} // namespace openace::live
