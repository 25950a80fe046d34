// The piece picker: which blocks to request from which peer next.
//
// Pure scheduling logic: no sockets, no clock reads (every time is passed
// in), no I/O.  The session owns one Picker per torrent and feeds it what the
// wire reports (bitfields, haves, arrivals, rejects, chokes) and what the
// storage decides (verified, failed, evicted pieces).
//
// Policy, in the order pick() applies it:
//  1. Time-critical pieces: a reader (a player reading the stream) registers
//     a deadline window of bytes ahead of its position, sized by the caller
//     from bitrate x seconds.  Pieces in a window get a deadline that grows
//     with their distance from the position; pick() walks them by deadline
//     and, per piece, hands out unrequested blocks first and then blocks that
//     another peer was asked for more than `late_after` ago (a duplicate
//     request; each further timeout allows one more).  The session decides
//     which peer to ask first (by_queue_length: shortest request queue).
//  2. Partially downloaded pieces: finish what is started.
//  3. Rarest-first among the remaining wanted pieces, ties in a fixed
//     pseudo-random order per Picker (the seed), so that clients in a swarm
//     do not all fetch the same piece.
//  4. Endgame: once every missing wanted block is requested, blocks may be
//     requested again from other peers; block_received names the peers to
//     cancel.
//
// State is kept between calls (issue #5891 of libtorrent: rebuilding the
// deadline schedule every tick does not scale): pieces are kept in an array
// ordered by availability bucket, moved by O(1) swaps when a have arrives;
// the deadline list is rebuilt only when a reader moves, and pick() looks
// only at the pieces inside reader windows for step 1.  Per piece the picker
// keeps 16 bytes and 2 bits; per-block state exists only for pieces in
// flight.
//
// Threading: none.  A Picker is a plain object used from one thread (the
// session's loop thread); it never calls out.
//
// Errors: piece indices out of range, a bitfield of the wrong size and bad
// constructor, range or reader arguments throw
// openace::Error(Errc::INVAL, "picker", <operation>, <detail naming the value>).
// Blocks come from the wire, so malformed blocks (bad offset, length or
// piece) never throw: block_received reports them as not new and
// request_dropped ignores them.
#pragma once

#include "transport/bitfield.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

namespace openace::transport {

class Picker {
public:
    using clock = std::chrono::steady_clock;
    using PeerKey = std::uint64_t; // opaque id of a connection, chosen by the session
    struct Block {
        std::uint32_t piece = 0, begin = 0, length = 0;
        bool operator==(const Block &) const = default;
    };

    // A torrent of `num_pieces` pieces of `piece_length` bytes (the last one
    // holds the rest of `total_length`), requested in blocks of `block_size`
    // (16 KiB on the wire; the last block of the last piece may be shorter).
    // `seed` fixes the tie order among equally rare pieces; the session
    // should pass something that differs between clients (e.g. a hash of its
    // peer id).  Throws INVAL when the sizes do not agree
    // (num_pieces != ceil(total_length / piece_length)) or are not positive.
    Picker(std::uint32_t num_pieces, std::int64_t piece_length, std::int64_t total_length,
           std::uint32_t block_size = 16384, std::uint64_t seed = 0);

    std::uint32_t num_pieces() const noexcept { return num_pieces_; }
    std::int64_t piece_size(std::uint32_t piece) const;      // throws INVAL out of range
    std::uint32_t blocks_in_piece(std::uint32_t piece) const; // throws INVAL out of range

    // --- Availability (for rarest-first) ---------------------------------
    // A peer's bitfield (or have-all).  Calling again for a known peer
    // replaces its bitfield and keeps its outstanding requests.  A full
    // bitfield counts as have-all (O(1) bookkeeping for seeds).
    void add_peer(PeerKey peer, const Bitfield &have);
    void add_peer_have_all(PeerKey peer);
    // A HAVE message.  An unknown peer is added with an empty bitfield
    // (BEP 3 lets a peer with nothing skip the bitfield message).
    void peer_have(PeerKey peer, std::uint32_t piece);
    // Forgets the peer: its availability and all its outstanding requests
    // (back to the pool).  Unknown peers are ignored.
    void remove_peer(PeerKey peer);
    // Number of connected peers that have the piece.
    std::uint32_t availability(std::uint32_t piece) const;

    // --- Our side ----------------------------------------------------------
    // set_have after a piece verified (or was found on disk); clear_have
    // after eviction; piece_failed after a hash failure (all blocks back to
    // the pool).  set_have and piece_failed forget the piece's block state,
    // including requests still outstanding (normally none: every block
    // arrived); a late block then reads as not new.
    void set_have(std::uint32_t piece);
    void clear_have(std::uint32_t piece);
    void piece_failed(std::uint32_t piece);
    const Bitfield &have() const noexcept { return have_; }
    // Only bytes in [begin, end) of the piece space are wanted at all (the
    // chosen file of a multi-file torrent): every piece overlapping the range
    // is wanted.  Default: everything.  0 <= begin <= end <= total_length,
    // else INVAL.  O(pieces log pieces): meant for rare calls.
    void set_wanted(std::int64_t begin, std::int64_t end);
    bool is_wanted(std::uint32_t piece) const noexcept
    {
        return piece >= wanted_first_ && piece < wanted_end_;
    }
    bool complete() const noexcept { return missing_ == 0; } // every wanted piece is had

    // --- Streaming readers -------------------------------------------------
    // A deadline window of `window_bytes` starting at byte `position` (the
    // caller sizes it from bitrate x seconds).  Every piece overlapping
    // [position, position + window_bytes) is time-critical with deadline
    // now + distance / bytes_per_second, the distance being from `position`
    // to the piece's first byte (0 for the piece holding `position`).  With
    // several readers a piece keeps its earliest deadline.  Calling it again
    // for the same reader moves the window (seek or advance): deadlines of
    // pieces that left every window clear.  INVAL unless
    // 0 <= position <= total_length, window_bytes >= 0 and
    // bytes_per_second > 0.  Cost: O(window pieces x log) per call.
    void set_reader(int reader, std::int64_t position, std::int64_t window_bytes,
                    double bytes_per_second, clock::time_point now);
    void remove_reader(int reader);
    bool is_time_critical(std::uint32_t piece) const noexcept { return critical_bits_.test(piece); }
    // The deadline of a time-critical piece; clock::time_point::max()
    // otherwise.  O(window pieces): for diagnostics.
    clock::time_point deadline(std::uint32_t piece) const;

    // --- Requests ------------------------------------------------------------
    // Up to max_blocks blocks to request from `peer` now (the peer's pieces
    // are known from add_peer/peer_have; an unknown peer gets none), in the
    // order described at the top of this file.  Marks the returned blocks
    // requested by `peer` at `now`.  Never returns a block the peer already
    // has requested, a received block, or a block of a piece we have or do
    // not want.  Cost: the reader windows, the pieces in flight, and the
    // rarest-first walk until max_blocks are found; the walk skips pieces the
    // peer lacks, so asking a peer that has none of the missing pieces scans
    // them all (the session asks only peers it is interested in).
    std::vector<Block> pick(PeerKey peer, int max_blocks, clock::time_point now,
                            std::chrono::milliseconds late_after = std::chrono::milliseconds(2000));

    // A block arrived from `peer`.  It is new when its piece is missing, it
    // was not received yet and it is requested from some peer (usually this
    // one; a duplicate request's first answer wins).  Returns the other peers
    // that still had it requested (the session sends them a cancel; their
    // requests are forgotten here).  Duplicate, unrequested or malformed
    // blocks return {} and *was_new = false.
    std::vector<PeerKey> block_received(PeerKey peer, const Block &b, bool *was_new = nullptr);
    // Every block of the piece is received (the session then verifies it).
    // False for a piece we already have.
    bool piece_blocks_complete(std::uint32_t piece) const;
    // A request went nowhere (reject, choke, timeout): back to the pool.
    // Unknown requests are ignored.
    void request_dropped(PeerKey peer, const Block &b);
    // Every outstanding request of the peer back to the pool (choked without
    // the fast extension).
    void peer_choked(PeerKey peer);
    // The peer's outstanding requests, oldest first.
    std::vector<Block> outstanding(PeerKey peer) const;
    std::size_t outstanding_count(PeerKey peer) const;
    // True once every missing wanted block is requested (and some are missing).
    bool endgame() const noexcept { return unrequested_ == 0 && missing_ > 0; }

    // Session helper for "time-critical pieces go to the peers with the
    // shortest request queue": given candidate peers with their queue
    // lengths, order them shortest first (stable).
    static std::vector<PeerKey> by_queue_length(std::vector<std::pair<PeerKey, std::size_t>> peers);

    // {"pieces", "have", "wanted", "missing", "time_critical", "requested_blocks",
    //  "partial_pieces", "endgame", "peers",
    //  "readers": [{"id", "position", "window_bytes", "bytes_per_second",
    //               "first_piece", "end_piece"}]}
    nlohmann::json status() const;

    // Re-derives every counter, index and cross-reference from scratch and
    // compares (O(pieces + requests)).  For tests; false means a bug here.
    bool consistent() const;

private:
    static constexpr std::uint32_t kNone = 0xffffffffu;

    struct Request {
        PeerKey peer;
        clock::time_point at;
    };
    struct BlockState {
        std::vector<Request> requests; // usually 0 or 1
        bool received = false;
    };
    // A piece in flight: some block requested or received.
    struct Partial {
        std::uint32_t piece = 0;
        std::uint32_t unrequested = 0; // not received and no request
        std::uint32_t received = 0;
        std::vector<BlockState> blocks;
    };
    struct Peer {
        Bitfield have; // unused (empty) for a seed
        bool seed = false;
        std::vector<Block> outstanding;
        bool has(std::uint32_t piece) const noexcept { return seed || have.test(piece); }
    };
    struct Reader {
        std::int64_t position = 0, window = 0;
        double rate = 0;
        clock::time_point set_at{};
        std::uint32_t first = 0, end = 0; // pieces [first, end)
    };
    struct Critical {
        clock::time_point deadline;
        std::uint32_t piece;
    };
    enum class Take { fresh, late, duplicate };
    struct PickCtx;

    void check_piece(std::uint32_t piece, const char *op) const;
    std::int64_t size_of(std::uint32_t piece) const noexcept;    // unchecked piece_size
    std::uint32_t blocks_of(std::uint32_t piece) const noexcept; // unchecked blocks_in_piece
    bool candidate(std::uint32_t piece) const noexcept { return is_wanted(piece) && !have_.test(piece); }
    std::uint32_t candidate_unrequested(std::uint32_t piece) const noexcept;
    Block block_at(std::uint32_t piece, std::uint32_t index) const noexcept;
    bool locate(const Block &b, std::uint32_t *index) const noexcept;

    // Availability order: order_ holds every piece; bucket 0 = not a
    // candidate (had or unwanted), bucket a + 1 = candidate held by `a`
    // non-seed peers; within a bucket the order is pseudo-random.
    void rebuild_order();
    void recount();
    void swap_order(std::uint32_t i, std::uint32_t j) noexcept;
    void bucket_up(std::uint32_t piece, std::uint32_t from);
    void bucket_down(std::uint32_t piece, std::uint32_t from);
    void avail_inc(std::uint32_t piece);
    void avail_dec(std::uint32_t piece);
    void set_candidate(std::uint32_t piece, bool have);
    void forget_availability(const Peer &p);

    std::uint32_t new_partial(std::uint32_t piece);
    void release_partial(std::uint32_t piece);
    void add_request(std::uint32_t slot, std::uint32_t index, PickCtx &ctx);
    void unlink(PeerKey peer, const Block &b);
    static void erase_outstanding(Peer &p, const Block &b);

    void take(std::uint32_t slot, PickCtx &ctx, Take mode);
    void pick_critical(PickCtx &ctx);
    void pick_partials(PickCtx &ctx, Take mode);
    void pick_rarest(PickCtx &ctx);

    void rebuild_critical();
    bool consistent_order() const;
    bool consistent_requests() const;

    std::uint32_t num_pieces_;
    std::int64_t piece_length_;
    std::int64_t total_length_;
    std::uint32_t block_size_;
    std::uint64_t seed_;

    Bitfield have_;
    std::uint32_t wanted_first_ = 0, wanted_end_ = 0;
    std::uint32_t missing_ = 0;              // candidate pieces
    std::uint64_t unrequested_ = 0;          // unrequested blocks of candidate pieces

    std::vector<std::uint32_t> avail_;       // non-seed peers holding the piece
    std::uint32_t seeds_ = 0;
    std::vector<std::uint32_t> order_;       // pieces by bucket
    std::vector<std::uint32_t> pos_;         // index of each piece in order_
    std::vector<std::uint32_t> bucket_begin_; // per bucket, plus a sentinel = num_pieces

    std::vector<std::uint32_t> slot_;        // index into partials_, or kNone
    std::vector<Partial> partials_;

    std::unordered_map<PeerKey, Peer> peers_;
    std::map<int, Reader> readers_;
    std::vector<Critical> critical_;         // sorted by (deadline, piece)
    Bitfield critical_bits_;
};

} // namespace openace::transport
