#include "transport/storage.hpp"

#include "core/error.hpp"
#include "net/uv_handle.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string_view>

namespace openace::transport {

namespace fs = std::filesystem;

using ReadCb = std::function<void(std::string data, const std::string &error)>;
using WriteCb = std::function<void(bool ok, const std::string &error)>;

namespace {

// One uv_queue_work request: `work` on the pool, then `done` on the loop
// unless `owner` has expired meanwhile (the storage was destroyed).  Neither
// may throw out of libuv.
struct PoolJob {
    uv_work_t req{};
    std::weak_ptr<int> owner;
    std::function<void()> work;
    std::function<void()> done;
};

// 0 or the libuv error; on error nothing was queued.
int queue_work(uv_loop_t *loop, const std::shared_ptr<int> &owner, std::function<void()> work,
               std::function<void()> done)
{
    auto *job = new PoolJob{{}, owner, std::move(work), std::move(done)};
    job->req.data = job;
    int rc = uv_queue_work(
        loop, &job->req,
        [](uv_work_t *r) {
            try {
                static_cast<PoolJob *>(r->data)->work();
            } catch (...) {
                // work functions report through their job state; never unwind into libuv
            }
        },
        [](uv_work_t *r, int) {
            std::unique_ptr<PoolJob> j(static_cast<PoolJob *>(r->data));
            if (j->owner.expired() || !j->done)
                return;
            try {
                j->done();
            } catch (...) {
                // a user callback threw: nothing may unwind through libuv
            }
        });
    if (rc != 0)
        delete job;
    return rc;
}

// Runs callbacks in a later loop iteration (an idle handle that is active only
// while something is queued), so no callback runs inside the call that asked
// for it.  Destroying it drops what is still queued.
class Deferred {
public:
    explicit Deferred(uv_loop_t *loop)
    {
        // uv_idle_init cannot fail on a valid loop
        idle_.init(this, uv_idle_init, loop);
    }

    void post(std::function<void()> fn)
    {
        queue_.push_back(std::move(fn));
        uv_idle_start(idle_.get(), &Deferred::run);
    }

private:
    static void run(uv_idle_t *h)
    {
        auto *self = static_cast<Deferred *>(h->data);
        std::weak_ptr<int> alive = self->alive_;
        auto batch = std::move(self->queue_);
        self->queue_.clear();
        for (auto &fn : batch) {
            if (alive.expired())
                return; // a callback destroyed the owner
            try {
                fn();
            } catch (...) {
                // a user callback threw: nothing may unwind through libuv
            }
        }
        if (!alive.expired() && self->queue_.empty())
            uv_idle_stop(h);
    }

    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
    net::UvHandle<uv_idle_t> idle_;
    std::vector<std::function<void()>> queue_;
};

// 0, an errno value, or -1 at end of file.
int pread_full(int fd, char *out, std::size_t n, std::int64_t off)
{
    while (n > 0) {
        ssize_t r = ::pread(fd, out, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            return -1;
        out += r;
        n -= static_cast<std::size_t>(r);
        off += r;
    }
    return 0;
}

int pwrite_full(int fd, const char *in, std::size_t n, std::int64_t off)
{
    while (n > 0) {
        ssize_t r = ::pwrite(fd, in, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        in += r;
        n -= static_cast<std::size_t>(r);
        off += r;
    }
    return 0;
}

std::string io_error(const std::string &path, int err)
{
    return fmt::format("{}: {}", path, err == -1 ? "file is shorter than the torrent says" : std::strerror(err));
}

bool hash_matches(const Metainfo &m, std::uint32_t piece, std::string_view data)
{
    InfoHash h = sha1(data);
    return m.piece_hash(piece) == std::string_view(reinterpret_cast<const char *>(h.data()), h.size());
}

std::int64_t piece_offset(const Metainfo &m, std::uint32_t piece)
{
    return static_cast<std::int64_t>(piece) * m.piece_length;
}

bool is_cache_file_name(const std::string &name)
{
    if (name.size() != 45 || name.compare(40, 5, ".data") != 0)
        return false;
    return std::all_of(name.begin(), name.begin() + 40,
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Where piece bytes live, seen from the pool: must be safe to call from any
// pool thread while the loop runs.
class Backing {
public:
    virtual ~Backing() = default;
    // Fills out[0, n) from piece-space offset `offset`: "" or an error naming the file.
    virtual std::string read_at(std::int64_t offset, char *out, std::size_t n) const = 0;
};

// The user's files, in piece space.  Opens each file per read.
class FileBacking final : public Backing {
public:
    FileBacking(const Metainfo &m, const std::string &root)
    {
        for (const auto &f : m.files) {
            std::string path = root;
            if (m.multi_file) {
                path += "/" + m.name;
                for (const auto &c : f.path)
                    path += "/" + c;
            }
            parts_.push_back(Part{std::move(path), f.offset, f.length});
        }
    }

    std::string read_at(std::int64_t offset, char *out, std::size_t n) const override
    {
        auto it = std::upper_bound(parts_.begin(), parts_.end(), offset,
                                   [](std::int64_t off, const Part &p) { return off < p.offset + p.length; });
        for (; n > 0 && it != parts_.end(); ++it) {
            if (it->length == 0)
                continue;
            std::int64_t within = offset - it->offset;
            std::size_t take = static_cast<std::size_t>(std::min<std::int64_t>(it->length - within, static_cast<std::int64_t>(n)));
            int fd = ::open(it->path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return io_error(it->path, errno);
            int err = pread_full(fd, out, take, within);
            ::close(fd);
            if (err != 0)
                return io_error(it->path, err);
            out += take;
            n -= take;
            offset += static_cast<std::int64_t>(take);
        }
        return n == 0 ? std::string() : fmt::format("offset {}: beyond the torrent's files", offset);
    }

private:
    struct Part {
        std::string path;
        std::int64_t offset;
        std::int64_t length;
    };
    std::vector<Part> parts_;
};

// One cache data file.  Writes and hole punches are serialized by a mutex, and
// every write first punches the holes queued before it: an evicted piece that
// is downloaded again is never punched after its new data landed.
class CacheBacking final : public Backing {
public:
    CacheBacking(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
    ~CacheBacking() override { ::close(fd_); }

    std::string read_at(std::int64_t offset, char *out, std::size_t n) const override
    {
        int err = pread_full(fd_, out, n, offset);
        return err == 0 ? std::string() : io_error(path_, err);
    }

    std::string write_at(std::int64_t offset, std::string_view data)
    {
        std::lock_guard<std::mutex> lock(mu_);
        punch_locked();
        int err = pwrite_full(fd_, data.data(), data.size(), offset);
        return err == 0 ? std::string() : io_error(path_, err);
    }

    // Loop thread: remember a range to punch; punch_pending (pool) does it.
    void punch_later(std::int64_t offset, std::int64_t length)
    {
        std::lock_guard<std::mutex> lock(mu_);
        punches_.emplace_back(offset, length);
    }

    void punch_pending()
    {
        std::lock_guard<std::mutex> lock(mu_);
        punch_locked();
    }

private:
    void punch_locked()
    {
#ifdef FALLOC_FL_PUNCH_HOLE
        for (auto [off, len] : punches_) {
            // EOPNOTSUPP and friends: the piece is only forgotten (the cap
            // still holds for the accounting, the file keeps its blocks)
            (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
        }
#endif
        punches_.clear();
    }

    std::string path_;
    int fd_;
    std::mutex mu_;
    std::vector<std::pair<std::int64_t, std::int64_t>> punches_;
};

} // namespace

namespace detail {

// In-memory LRU of whole pieces keyed by (storage, piece).  Loop thread.
class PieceMemory {
public:
    explicit PieceMemory(std::int64_t cap) : cap_(cap) {}

    // The piece (now most recently used) or nullptr.  Valid until the next call.
    const std::string *get(const void *owner, std::uint32_t piece)
    {
        auto it = index_.find({owner, piece});
        if (it == index_.end())
            return nullptr;
        lru_.splice(lru_.begin(), lru_, it->second);
        return &it->second->data;
    }

    // Replaces the piece; a piece larger than the cap is not kept.
    void put(const void *owner, std::uint32_t piece, std::string data)
    {
        erase(owner, piece);
        auto size = static_cast<std::int64_t>(data.size());
        if (size > cap_)
            return;
        lru_.push_front(Entry{owner, piece, std::move(data)});
        index_[{owner, piece}] = lru_.begin();
        bytes_ += size;
        while (bytes_ > cap_) {
            Entry &old = lru_.back();
            bytes_ -= static_cast<std::int64_t>(old.data.size());
            index_.erase({old.owner, old.piece});
            lru_.pop_back();
        }
    }

    void erase(const void *owner, std::uint32_t piece)
    {
        auto it = index_.find({owner, piece});
        if (it == index_.end())
            return;
        bytes_ -= static_cast<std::int64_t>(it->second->data.size());
        lru_.erase(it->second);
        index_.erase(it);
    }

    void erase_owner(const void *owner)
    {
        for (auto it = lru_.begin(); it != lru_.end();) {
            if (it->owner != owner) {
                ++it;
                continue;
            }
            bytes_ -= static_cast<std::int64_t>(it->data.size());
            index_.erase({it->owner, it->piece});
            it = lru_.erase(it);
        }
    }

    std::int64_t bytes() const noexcept { return bytes_; }
    std::int64_t cap() const noexcept { return cap_; }

private:
    struct Entry {
        const void *owner;
        std::uint32_t piece;
        std::string data;
    };
    std::int64_t cap_;
    std::int64_t bytes_ = 0;
    std::list<Entry> lru_; // front: most recently used
    std::map<std::pair<const void *, std::uint32_t>, std::list<Entry>::iterator> index_;
};

// The read path both storages share: memory hits, one whole-piece read that
// concurrent block reads of the same piece wait for, and range reads for
// pieces too big to keep in memory.
class PieceStore : public Storage {
public:
    PieceStore(uv_loop_t *loop, const Metainfo &m, std::shared_ptr<Backing> backing)
        : loop_(loop), meta_(std::make_shared<const Metainfo>(m)), backing_(std::move(backing)), deferred_(loop)
    {
    }

    void read(std::uint32_t piece, std::uint32_t begin, std::uint32_t length, ReadCb cb) override
    {
        std::string err = not_readable(piece);
        std::int64_t size = meta_->piece_size(piece);
        if (err.empty() && std::int64_t{begin} + length > size)
            err = fmt::format("piece {}: range [{}, {}) outside the piece ({} bytes)", piece, begin,
                              std::int64_t{begin} + length, size);
        if (!err.empty()) {
            post([cb = std::move(cb), err] { cb({}, err); });
            return;
        }
        on_read(piece);
        if (const std::string *d = memory_->get(this, piece)) {
            post([cb = std::move(cb), data = d->substr(begin, length)]() mutable { cb(std::move(data), {}); });
            return;
        }
        if (auto it = fetching_.find(piece); it != fetching_.end()) {
            it->second.push_back(Waiter{begin, length, std::move(cb)});
            return;
        }
        if (must_verify(piece) || size <= memory_->cap() / 2)
            fetch(piece, Waiter{begin, length, std::move(cb)});
        else
            read_range(piece, begin, length, std::move(cb));
    }

protected:
    // "" when the piece can be read, else why not.
    virtual std::string not_readable(std::uint32_t piece) const = 0;
    virtual void on_read(std::uint32_t) {}
    // Pool IO on the piece starts / ended (the cache keeps such pieces).
    virtual void io_started(std::uint32_t) {}
    virtual void io_finished(std::uint32_t) {}
    // Whether a read must check the piece hash first (file storage).
    virtual bool must_verify(std::uint32_t) const { return false; }
    virtual void verified(std::uint32_t) {}

    void post(std::function<void()> fn) { deferred_.post(std::move(fn)); }

    // Queues pool work whose `done` is dropped once this storage is gone.
    // When libuv refuses, `failed(why)` runs in a later iteration instead.
    void queue(std::function<void()> work, std::function<void()> done,
               std::function<void(const std::string &)> failed)
    {
        if (int rc = queue_work(loop_, token_, std::move(work), std::move(done)))
            post([failed = std::move(failed), rc] { failed(net::uv_error(rc)); });
    }

    uv_loop_t *loop_;
    std::shared_ptr<const Metainfo> meta_;
    std::shared_ptr<Backing> backing_;
    PieceMemory *memory_ = nullptr; // set by the derived constructor
    std::shared_ptr<int> token_ = std::make_shared<int>(0);

private:
    struct Waiter {
        std::uint32_t begin;
        std::uint32_t length;
        ReadCb cb;
    };
    struct ReadJob {
        std::string data;
        std::string error;
    };

    void fetch(std::uint32_t piece, Waiter first)
    {
        fetching_[piece].push_back(std::move(first));
        io_started(piece);
        auto job = std::make_shared<ReadJob>();
        bool verify = must_verify(piece);
        queue(
            [job, backing = backing_, meta = meta_, piece, verify] {
                job->data.resize(static_cast<std::size_t>(meta->piece_size(piece)));
                job->error = backing->read_at(piece_offset(*meta, piece), job->data.data(), job->data.size());
                if (job->error.empty() && verify && !hash_matches(*meta, piece, job->data))
                    job->error = fmt::format("piece {}: the data on disk does not match the torrent "
                                             "(changed since the torrent was built?)",
                                             piece);
            },
            [this, job, piece, verify] { fetched(piece, verify, std::move(*job)); },
            [this, piece](const std::string &why) { fetched(piece, false, ReadJob{{}, why}); });
    }

    void fetched(std::uint32_t piece, bool verify, ReadJob job)
    {
        auto node = fetching_.extract(piece);
        std::vector<std::pair<ReadCb, std::string>> replies;
        for (auto &w : node.mapped())
            replies.emplace_back(std::move(w.cb), job.error.empty() ? job.data.substr(w.begin, w.length) : "");
        if (job.error.empty()) {
            if (verify)
                verified(piece);
            memory_->put(this, piece, std::move(job.data));
        }
        std::weak_ptr<int> alive = token_;
        for (auto &[cb, data] : replies) {
            if (alive.expired())
                return;
            cb(std::move(data), job.error);
        }
        if (!alive.expired())
            io_finished(piece);
    }

    void read_range(std::uint32_t piece, std::uint32_t begin, std::uint32_t length, ReadCb cb)
    {
        io_started(piece);
        auto job = std::make_shared<ReadJob>();
        auto shared_cb = std::make_shared<ReadCb>(std::move(cb));
        queue(
            [job, backing = backing_, off = piece_offset(*meta_, piece) + begin, length] {
                job->data.resize(length);
                job->error = backing->read_at(off, job->data.data(), length);
            },
            [this, job, piece, shared_cb] {
                std::weak_ptr<int> alive = token_;
                (*shared_cb)(job->error.empty() ? std::move(job->data) : std::string(), job->error);
                if (!alive.expired())
                    io_finished(piece);
            },
            [this, piece, shared_cb](const std::string &why) {
                std::weak_ptr<int> alive = token_;
                (*shared_cb)({}, why);
                if (!alive.expired())
                    io_finished(piece);
            });
    }

    Deferred deferred_;
    std::unordered_map<std::uint32_t, std::vector<Waiter>> fetching_;
};

class FileStorage final : public PieceStore {
public:
    FileStorage(uv_loop_t *loop, const Metainfo &m, std::string root, std::int64_t memory_cap)
        : PieceStore(loop, m, std::make_shared<FileBacking>(m, root)), root_(std::move(root)), own_memory_(memory_cap),
          verified_(m.piece_count(), false)
    {
        memory_ = &own_memory_;
    }

    void write_piece(std::uint32_t piece, std::string, WriteCb cb) override
    {
        post([cb = std::move(cb), why = fmt::format("piece {}: read-only storage (seeding {})", piece, root_)] {
            cb(false, why);
        });
    }

    bool has_piece(std::uint32_t piece) const override { return piece < meta_->piece_count(); }

protected:
    std::string not_readable(std::uint32_t piece) const override
    {
        return has_piece(piece) ? std::string() : fmt::format("piece {} not stored", piece);
    }
    bool must_verify(std::uint32_t piece) const override { return !verified_[piece]; }
    void verified(std::uint32_t piece) override { verified_[piece] = true; }

private:
    std::string root_;
    PieceMemory own_memory_;
    std::vector<bool> verified_;
};

// One torrent in the DiskCache.  The cache owns the cross-torrent LRU and the
// byte count; this keeps the per-piece state (stored, in use, pinned).
class CacheStorage final : public PieceStore {
public:
    CacheStorage(DiskCache &cache, const Metainfo &m, std::string hex, std::string path, int fd)
        : PieceStore(cache.loop_, m, std::make_shared<CacheBacking>(path, fd)), cache_(cache), hex_(std::move(hex)),
          path_(std::move(path))
    {
        disk_ = std::static_pointer_cast<CacheBacking>(backing_);
        memory_ = cache.memory_.get();
    }

    ~CacheStorage() override
    {
        for (auto &[piece, s] : stored_)
            cache_.remove_piece(s.lru, s.bytes);
        cache_.memory_->erase_owner(this);
        cache_.open_.erase(hex_);
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
            cache_.log_.warn("cannot delete {}: {}", path_, std::strerror(errno));
        // The last close of a large file frees its blocks: let the pool do it
        // (work still in flight may hold the file open longer; that is fine).
        disk_.reset();
        queue_work(loop_, token_, [b = std::move(backing_)]() mutable { b.reset(); }, {});
    }

    void write_piece(std::uint32_t piece, std::string data, WriteCb cb) override
    {
        std::string err;
        if (piece >= meta_->piece_count())
            err = fmt::format("piece {} out of range ({} pieces)", piece, meta_->piece_count());
        else if (static_cast<std::int64_t>(data.size()) != meta_->piece_size(piece))
            err = fmt::format("piece {}: {} bytes, expected {}", piece, data.size(), meta_->piece_size(piece));
        if (!err.empty()) {
            post([cb = std::move(cb), err] { cb(false, err); });
            return;
        }
        ++busy_[piece];
        auto job = std::make_shared<WriteJob>();
        job->data = std::move(data);
        auto shared_cb = std::make_shared<WriteCb>(std::move(cb));
        queue(
            [job, disk = disk_, meta = meta_, piece] {
                job->match = hash_matches(*meta, piece, job->data);
                if (job->match)
                    job->error = disk->write_at(piece_offset(*meta, piece), job->data);
            },
            [this, job, piece, shared_cb] { written(piece, std::move(*job), *shared_cb); },
            [this, piece, shared_cb](const std::string &why) { written(piece, WriteJob{{}, true, why}, *shared_cb); });
    }

    bool has_piece(std::uint32_t piece) const override { return stored_.count(piece) != 0; }

    void pin(std::vector<std::pair<std::uint32_t, std::uint32_t>> piece_ranges) override
    {
        pins_ = std::move(piece_ranges);
        // unpinned pieces may now be evicted: not from inside this call
        post([this] { cache_.enforce_cap(); });
    }

    // For DiskCache::enforce_cap.
    bool evictable(std::uint32_t piece) const
    {
        if (busy_.count(piece))
            return false;
        return std::none_of(pins_.begin(), pins_.end(),
                            [piece](const auto &r) { return piece >= r.first && piece < r.second; });
    }

    // Forgets a stored piece (the cache has unlinked it from its LRU) and
    // punches its hole on the pool; returns its size.
    std::int64_t evict(std::uint32_t piece)
    {
        auto it = stored_.find(piece);
        std::int64_t bytes = it->second.bytes;
        stored_.erase(it);
        memory_->erase(this, piece);
        disk_->punch_later(piece_offset(*meta_, piece), bytes);
        queue_work(loop_, token_, [disk = disk_] { disk->punch_pending(); }, {});
        return bytes;
    }

    std::weak_ptr<int> token() const { return token_; }

protected:
    std::string not_readable(std::uint32_t piece) const override
    {
        return has_piece(piece) ? std::string() : fmt::format("piece {} not stored", piece);
    }
    void on_read(std::uint32_t piece) override { cache_.touch(stored_.at(piece).lru); }
    void io_started(std::uint32_t piece) override { ++busy_[piece]; }
    void io_finished(std::uint32_t piece) override
    {
        release(piece);
        if (cache_.bytes_ > cache_.cap_)
            cache_.enforce_cap();
    }

private:
    struct WriteJob {
        std::string data;
        bool match = false;
        std::string error;
    };
    struct Stored {
        std::list<DiskCache::Key>::iterator lru;
        std::int64_t bytes;
    };

    void release(std::uint32_t piece)
    {
        auto it = busy_.find(piece);
        if (it != busy_.end() && --it->second == 0)
            busy_.erase(it);
    }

    void written(std::uint32_t piece, WriteJob job, const WriteCb &cb)
    {
        release(piece);
        std::weak_ptr<int> alive = token_;
        if (!job.match || !job.error.empty()) {
            cb(false, job.error);
            if (!alive.expired() && cache_.bytes_ > cache_.cap_)
                cache_.enforce_cap();
            return;
        }
        if (auto it = stored_.find(piece); it != stored_.end())
            cache_.touch(it->second.lru);
        else
            stored_[piece] = Stored{cache_.add_piece(this, piece, meta_->piece_size(piece)), meta_->piece_size(piece)};
        memory_->put(this, piece, std::move(job.data));
        cb(true, {});
        if (!alive.expired())
            cache_.enforce_cap({this, piece});
    }

    DiskCache &cache_;
    std::string hex_;
    std::string path_;
    std::shared_ptr<CacheBacking> disk_;
    std::unordered_map<std::uint32_t, Stored> stored_;
    std::unordered_map<std::uint32_t, int> busy_; // reads / writes in flight
    std::vector<std::pair<std::uint32_t, std::uint32_t>> pins_;
};

} // namespace detail

std::unique_ptr<Storage> make_file_storage(uv_loop_t *loop, const Metainfo &m, std::string root,
                                           std::int64_t memory_cap)
{
    return std::make_unique<detail::FileStorage>(loop, m, std::move(root), memory_cap);
}

// ------------------------------------------------------------------ DiskCache

DiskCache::DiskCache(uv_loop_t *loop, core::Logger log, std::string dir, std::int64_t cap_bytes,
                     std::int64_t memory_cap)
    : loop_(loop), log_(std::move(log)), dir_(std::move(dir)), cap_(cap_bytes)
{
    if (cap_bytes <= 0)
        throw_errorf(Errc::INVAL, "cache", "open", "{}: cap must be > 0 bytes (got {})", dir_, cap_bytes);
    if (memory_cap < 0)
        throw_errorf(Errc::INVAL, "cache", "open", "{}: memory cap must be >= 0 bytes (got {})", dir_, memory_cap);
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec)
        throw_errorf(Errc::IO, "cache", "open", "{}: {}", dir_, ec.message());
    if (!fs::is_directory(dir_, ec))
        throw_errorf(Errc::IO, "cache", "open", "{}: not a directory", dir_);
    remove_stale_files();
    memory_ = std::make_unique<detail::PieceMemory>(memory_cap);
}

DiskCache::~DiskCache()
{
    if (!open_.empty())
        log_.error("disk cache destroyed with {} storages still open", open_.size());
}

void DiskCache::remove_stale_files()
{
    std::error_code ec;
    fs::directory_iterator it(dir_, ec), end;
    if (ec)
        throw_errorf(Errc::IO, "cache", "open", "{}: {}", dir_, ec.message());
    for (; it != end; it.increment(ec)) {
        if (!is_cache_file_name(it->path().filename().string()))
            continue;
        std::error_code rm;
        if (fs::remove(it->path(), rm))
            log_.debug("removed stale cache file {}", it->path().string());
        else if (rm)
            log_.warn("cannot remove stale cache file {}: {}", it->path().string(), rm.message());
    }
    if (ec)
        throw_errorf(Errc::IO, "cache", "open", "{}: {}", dir_, ec.message());
}

std::unique_ptr<Storage> DiskCache::open(const Metainfo &m)
{
    std::string hex = to_hex(m.infohash);
    if (open_.count(hex))
        throw_errorf(Errc::STATE, "cache", "open", "{}: already open", hex);
    std::string path = dir_ + "/" + hex + ".data";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        throw_errorf(Errc::IO, "cache", "open", "{}: {}", path, std::strerror(errno));
    if (::ftruncate(fd, m.total_length) != 0) {
        int err = errno;
        ::close(fd);
        ::unlink(path.c_str());
        throw_errorf(Errc::IO, "cache", "open", "{}: {}", path, std::strerror(err));
    }
    auto s = std::make_unique<detail::CacheStorage>(*this, m, hex, path, fd);
    open_[hex] = s.get();
    return s;
}

nlohmann::json DiskCache::status() const
{
    return {{"dir", dir_},
            {"cap_bytes", cap_},
            {"bytes_stored", bytes_},
            {"evictions", evictions_},
            {"torrents", open_.size()},
            {"pieces", lru_.size()},
            {"over_cap", bytes_ > cap_},
            {"memory_bytes", memory_->bytes()},
            {"memory_cap", memory_->cap()}};
}

std::list<DiskCache::Key>::iterator DiskCache::add_piece(detail::CacheStorage *s, std::uint32_t piece,
                                                         std::int64_t bytes)
{
    bytes_ += bytes;
    lru_.emplace_front(s, piece);
    return lru_.begin();
}

void DiskCache::touch(std::list<Key>::iterator it)
{
    lru_.splice(lru_.begin(), lru_, it);
}

void DiskCache::remove_piece(std::list<Key>::iterator it, std::int64_t bytes)
{
    bytes_ -= bytes;
    lru_.erase(it);
}

void DiskCache::enforce_cap(Key keep)
{
    std::vector<std::pair<std::weak_ptr<int>, Key>> victims;
    auto it = lru_.end();
    while (bytes_ > cap_ && it != lru_.begin()) {
        --it;
        Key k = *it;
        if (k == keep || !k.first->evictable(k.second))
            continue;
        it = lru_.erase(it);
        bytes_ -= k.first->evict(k.second);
        ++evictions_;
        victims.emplace_back(k.first->token(), k);
    }
    if (bytes_ > cap_ && !over_cap_logged_)
        log_.warn("cache over its cap: {} bytes stored, cap {} (every other piece is pinned or in use)", bytes_,
                  cap_);
    over_cap_logged_ = bytes_ > cap_;
    // Callbacks last: one of them may close (destroy) any storage.
    for (auto &[alive, k] : victims)
        if (!alive.expired() && k.first->on_evicted)
            k.first->on_evicted(k.second);
}

} // namespace openace::transport
