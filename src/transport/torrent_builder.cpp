#include "transport/torrent_builder.hpp"

#include "core/error.hpp"
#include "core/sha1.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace openace::transport {

namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kMinPiece = 16 << 10;
constexpr std::int64_t kMaxPiece = 16 << 20;
constexpr std::int64_t kMaxPieces = 2000;
constexpr std::size_t kReadBuffer = 1 << 20;

struct Found {
    std::vector<std::string> rel; // components under the torrent's directory
    std::string path;
    std::int64_t length;
};

[[noreturn]] void read_error(const std::string &path, int err)
{
    throw_errorf(Errc::IO, "seed", "read", "{}: {}", path, std::strerror(err));
}

// Why a file name cannot be a torrent path component (parse_metainfo would
// reject it), or nullptr.
const char *unsupported_name(const std::string &name)
{
    if (name.empty() || name == "." || name == "..")
        return "not a usable name";
    if (name.find('\\') != std::string::npos)
        return "name contains a backslash (not allowed in torrents)";
    if (name.size() >= 2 && name[1] == ':')
        return "name looks like a drive letter (not allowed in torrents)";
    return nullptr;
}

void walk(const std::string &dir, std::vector<std::string> &rel, std::vector<Found> &out,
          const std::function<void(const std::string &, const std::string &)> &skipped)
{
    auto skip = [&](const std::string &p, const std::string &why) {
        if (skipped)
            skipped(p, why);
    };
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    if (ec)
        throw_errorf(Errc::IO, "seed", "read", "{}: {}", dir, ec.message());
    for (; it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        std::string path = it->path().string();
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0)
            read_error(path, errno);
        if (S_ISLNK(st.st_mode)) {
            skip(path, "symbolic link");
            continue;
        }
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            skip(path, "not a regular file");
            continue;
        }
        if (const char *why = unsupported_name(name)) {
            skip(path, why);
            continue;
        }
        rel.push_back(name);
        if (S_ISDIR(st.st_mode))
            walk(path, rel, out, skipped);
        else
            out.push_back(Found{rel, path, static_cast<std::int64_t>(st.st_size)});
        rel.pop_back();
    }
    if (ec)
        throw_errorf(Errc::IO, "seed", "read", "{}: {}", dir, ec.message());
}

// Incremental SHA-1 of the piece being read; appends each digest to `pieces`.
class PieceHasher {
public:
    void update(const char *p, std::size_t n) { sha1_.update(p, n); }
    void finish_piece(std::string &pieces)
    {
        const auto h = sha1_.finish(); // also starts the next piece
        pieces.append(reinterpret_cast<const char *>(h.data()), h.size());
    }

private:
    core::Sha1 sha1_;
};

struct Fd {
    int fd;
    ~Fd()
    {
        if (fd >= 0)
            ::close(fd);
    }
};

// Reads every file in order, hashing piece by piece; returns the pieces string.
std::string hash_files(const std::string &top, const std::vector<Found> &files, std::int64_t plen,
                       std::int64_t total, const std::function<bool(std::int64_t, std::int64_t)> &progress)
{
    std::string pieces;
    std::vector<char> buf(static_cast<std::size_t>(std::min<std::int64_t>(kReadBuffer, plen)));
    PieceHasher hasher;
    std::int64_t in_piece = 0, done = 0;
    auto piece_done = [&] {
        hasher.finish_piece(pieces);
        in_piece = 0;
        if (progress && !progress(done, total))
            throw_errorf(Errc::CANCELLED, "seed", "build", "{}: cancelled", top);
    };
    for (const auto &f : files) {
        Fd fd{::open(f.path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (fd.fd < 0)
            read_error(f.path, errno);
        for (std::int64_t left = f.length; left > 0;) {
            auto want = static_cast<std::size_t>(
                std::min<std::int64_t>({static_cast<std::int64_t>(buf.size()), left, plen - in_piece}));
            ssize_t n = ::read(fd.fd, buf.data(), want);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                read_error(f.path, errno);
            if (n == 0)
                throw_errorf(Errc::IO, "seed", "read", "{}: file shrank while it was being read", f.path);
            hasher.update(buf.data(), static_cast<std::size_t>(n));
            in_piece += n;
            done += n;
            left -= n;
            if (in_piece == plen)
                piece_done();
        }
    }
    if (in_piece > 0)
        piece_done();
    return pieces;
}

} // namespace

std::int64_t choose_piece_length(std::int64_t total_bytes)
{
    std::int64_t p = kMinPiece;
    while (p < kMaxPiece && (total_bytes + p - 1) / p > kMaxPieces)
        p *= 2;
    return p;
}

BuiltTorrent build_torrent_from_path(const std::string &path, const std::vector<std::string> &trackers,
                                     std::int64_t piece_length, std::function<bool(std::int64_t, std::int64_t)> progress,
                                     std::function<void(const std::string &, const std::string &)> skipped)
{
    if (piece_length < 0)
        throw_errorf(Errc::INVAL, "seed", "build", "{}: piece length must be > 0 (got {})", path, piece_length);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        read_error(path, errno);
    std::error_code ec;
    fs::path abs = fs::absolute(path, ec).lexically_normal();
    if (ec)
        throw_errorf(Errc::IO, "seed", "read", "{}: {}", path, ec.message());
    if (!abs.has_filename())
        abs = abs.parent_path(); // "dir/" normalizes to a trailing separator
    std::string name = abs.filename().string();
    if (const char *why = unsupported_name(name))
        throw_errorf(Errc::INVAL, "seed", "build", "{}: '{}' cannot name a torrent: {}", path, name, why);

    const bool single = S_ISREG(st.st_mode);
    std::vector<Found> files;
    if (single) {
        files.push_back(Found{{}, abs.string(), static_cast<std::int64_t>(st.st_size)});
    } else if (S_ISDIR(st.st_mode)) {
        std::vector<std::string> rel;
        walk(abs.string(), rel, files, skipped);
        std::sort(files.begin(), files.end(), [](const Found &x, const Found &y) { return x.rel < y.rel; });
    }
    std::int64_t total = 0;
    for (const auto &f : files)
        total += f.length;
    if (total == 0)
        throw_errorf(Errc::INVAL, "seed", "build", "{}: no files to seed{}", path,
                     files.empty() ? "" : " (every file is empty)");

    std::int64_t plen = piece_length > 0 ? piece_length : choose_piece_length(total);
    std::string pieces = hash_files(path, files, plen, total, progress);
    BuiltTorrent out;
    std::vector<TorrentFile> entries;
    for (const auto &f : files)
        entries.push_back({f.rel, f.length});
    out.torrent = encode_torrent(name, plen, std::move(pieces), entries, single, trackers);
    out.metainfo = parse_metainfo(out.torrent);
    out.root = single ? abs.string() : abs.parent_path().string();
    return out;
}

} // namespace openace::transport
