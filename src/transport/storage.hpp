// Piece storage (DESIGN §2 TransportEngine: "disk storage with a size cap").
//
// A Storage holds one torrent's verified pieces.  Two kinds exist:
//
//   - make_file_storage: the user's own files (seed job).  Every piece is
//     present, nothing is written or evicted; reads map the piece space onto
//     the files.  Each piece is verified against the torrent the first time it
//     is served, so a file edited after the torrent was built is never handed
//     to peers (the read fails instead).
//   - DiskCache::open: pieces downloaded from the swarm.  write_piece hashes
//     the piece and stores it only when the SHA-1 matches the metainfo, so only
//     verified data is ever written or served.  The cache is shared by every
//     torrent of an engine and keeps the bytes it stores under a cap by
//     evicting least-recently-used pieces that no reader has pinned.
//
// Threading: every member of Storage and DiskCache, and every callback they
// make (write/read callbacks, on_evicted), runs on the loop thread.  SHA-1 and
// disk IO run on the libuv thread pool (uv_queue_work).  Callbacks are never
// called from inside the call that asked for them; they come from a later
// loop iteration.
//
// Lifetime: destroying a Storage while work is in flight is safe: the work
// finishes on the pool (it owns what it touches through shared_ptrs) and its
// callback is dropped.  The loop must keep running until that work is done
// for its memory to be released (as with any uv request).
//
// Memory: piece data is moved from write_piece into the pool, onto disk and
// into the in-memory LRU without copies; a read copies the requested range
// out of the whole piece once.
#pragma once

#include "core/log.hpp"
#include "transport/metainfo.hpp"

#include <nlohmann/json_fwd.hpp>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace openace::transport {

class Storage {
public:
    virtual ~Storage() = default;

    // Verifies `data` (the whole piece) against the metainfo hash on the pool;
    // if it matches, stores it.  cb(true, "") when stored; cb(false, "") on a
    // hash mismatch (nothing stored); cb(false, error) on an IO error, a piece
    // index out of range, a size that is not the piece's, or a read-only
    // storage.
    virtual void write_piece(std::uint32_t piece, std::string data,
                             std::function<void(bool ok, const std::string &error)> cb) = 0;

    // Reads [begin, begin + length) of a stored piece.  cb(data, "") or
    // cb({}, error): "piece N not stored", a range outside the piece, an IO
    // error, or (file storage) data that no longer matches the torrent.
    virtual void read(std::uint32_t piece, std::uint32_t begin, std::uint32_t length,
                      std::function<void(std::string data, const std::string &error)> cb) = 0;

    virtual bool has_piece(std::uint32_t piece) const = 0;

    // Pieces that must not be evicted now (the readers' windows), as
    // [first, last) ranges; replaces the previous pin set.
    virtual void pin(std::vector<std::pair<std::uint32_t, std::uint32_t>> piece_ranges) { (void)piece_ranges; }

    // Called when a stored piece was evicted (the session clears its have bit).
    // Never called for a piece whose write callback has not run yet.
    std::function<void(std::uint32_t piece)> on_evicted;
};

// The user's own files (seed job): all pieces present; read-only; never
// evicted.  `root` is the file itself (single-file torrent) or the directory
// that contains Metainfo::name's directory (multi-file).  Reads span file
// boundaries.  Files are opened per read (no descriptors held between reads).
// `memory_cap` bounds the whole pieces kept in memory between block reads.
// write_piece always fails with an error.  Nothing is opened here: a missing
// file shows up as a read error naming it.
std::unique_ptr<Storage> make_file_storage(uv_loop_t *loop, const Metainfo &m, std::string root,
                                           std::int64_t memory_cap = 8 << 20);

namespace detail {
class CacheStorage;
class PieceMemory;
} // namespace detail

// The shared disk cache of one engine: `dir` (state_dir/cache), cap in bytes
// over all torrents.
//
// Each torrent gets a sparse data file <dir>/<infohash hex>.data in piece
// space (piece i at i * piece_length).  When the total of stored piece bytes
// exceeds the cap after a write, least-recently-used (by last read or write)
// pieces — across all torrents — that are neither pinned nor being read or
// rewritten are evicted: a hole is punched in the data file (on the pool;
// where punching is not supported the piece is only forgotten) and the owning
// storage's on_evicted runs.  The piece just written is never its own write's
// victim.  If everything is pinned the write still succeeds, the cap is
// exceeded until pins change (logged once per episode).
//
// Files of torrents not opened in this run (every <40 hex>.data in `dir`) are
// deleted at construction: the cache does not survive restarts, which keeps it
// simple and always within its cap.
//
// Recently written or read pieces are also kept in an in-memory LRU
// (memory_cap bytes, shared by all torrents), so block reads of fresh pieces
// never touch the disk.  A piece not in memory is read from disk whole once
// (concurrent reads of it wait for that one read) when it fits in half of
// memory_cap; larger pieces are read range by range.
//
// Loop thread only.  The DiskCache must outlive every Storage it made.
class DiskCache {
public:
    // Creates `dir` when needed.  Throws Error(IO, "cache", "open",
    // "<dir>: <why>"), or Error(INVAL, "cache", "open", ...) for cap_bytes <= 0
    // or memory_cap < 0.
    DiskCache(uv_loop_t *loop, core::Logger log, std::string dir, std::int64_t cap_bytes,
              std::int64_t memory_cap = 32 << 20);
    ~DiskCache();
    DiskCache(const DiskCache &) = delete;
    DiskCache &operator=(const DiskCache &) = delete;

    // The torrent's storage in the cache, starting empty (a new data file).
    // Closing (destroying) it forgets its pieces and deletes the data file.
    // Throws Error(IO, "cache", "open", "<path>: <why>") when the data file
    // cannot be created, Error(STATE, "cache", "open", "<hex>: already open")
    // when a storage of that infohash is still open.
    std::unique_ptr<Storage> open(const Metainfo &m);

    std::int64_t bytes_stored() const noexcept { return bytes_; }
    std::int64_t cap() const noexcept { return cap_; }
    std::int64_t evictions() const noexcept { return evictions_; }
    // {"dir", "cap_bytes", "bytes_stored", "evictions", "torrents",
    //  "pieces", "over_cap", "memory_bytes", "memory_cap"}
    nlohmann::json status() const;

private:
    friend class detail::CacheStorage;
    using Key = std::pair<detail::CacheStorage *, std::uint32_t>;

    // Bookkeeping called by CacheStorage (loop thread).
    std::list<Key>::iterator add_piece(detail::CacheStorage *s, std::uint32_t piece, std::int64_t bytes);
    void touch(std::list<Key>::iterator it);
    void remove_piece(std::list<Key>::iterator it, std::int64_t bytes);
    // Evicts until within the cap; `keep` is never chosen.
    void enforce_cap(Key keep = {nullptr, 0});
    void remove_stale_files();

    uv_loop_t *loop_;
    core::Logger log_;
    std::string dir_;
    std::int64_t cap_;
    std::int64_t bytes_ = 0;
    std::int64_t evictions_ = 0;
    bool over_cap_logged_ = false;
    std::list<Key> lru_; // front: most recently used
    std::unique_ptr<detail::PieceMemory> memory_;
    std::unordered_map<std::string, detail::CacheStorage *> open_; // infohash hex -> storage
};

} // namespace openace::transport
