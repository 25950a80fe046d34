// BitTorrent v1 metainfo (.torrent, BEP 3): parse, validate and build.
#pragma once

#include "transport/bencode.hpp"
#include "transport/magnet.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openace::transport {

struct FileEntry {
    std::vector<std::string> path; // components under Metainfo::name (multi-file);
                                   // empty for a single-file torrent
    std::int64_t length = 0;
    std::int64_t offset = 0;       // start in the concatenated piece space
};

struct Metainfo {
    std::string name;
    std::int64_t piece_length = 0;
    std::string pieces;            // concatenated 20-byte SHA-1 hashes
    std::vector<FileEntry> files;  // one entry for a single-file torrent
    bool multi_file = false;
    std::int64_t total_length = 0;
    std::string announce;
    std::vector<std::vector<std::string>> announce_list; // tiers
    InfoHash infohash{};           // SHA-1 of the raw info dictionary
    std::string info_bytes;        // the raw info dictionary (for BEP 9 serving)

    std::size_t piece_count() const noexcept { return pieces.size() / 20; }
    // Bytes in piece i (the last one may be short).
    std::int64_t piece_size(std::size_t i) const noexcept;
    // 20 raw bytes.
    std::string_view piece_hash(std::size_t i) const noexcept;
    // announce-list flattened (unique, in tier order), or {announce}.
    std::vector<std::string> trackers() const;
};

// Throws openace::Error(Errc::PARSE, "metainfo", "parse",
// "field 'info.piece length': must be > 0") naming the bad field; bencode
// errors come through as Error(PARSE, "bencode", "decode", ...).
Metainfo parse_metainfo(std::string_view torrent);

// Parses a bare info dictionary (e.g. fetched by BEP 9) into a Metainfo
// without trackers; infohash is its SHA-1.
Metainfo parse_info_dict(std::string_view info);

// Each file's [offset, offset + length) in the piece space.
std::vector<std::pair<std::int64_t, std::int64_t>> file_offsets(const Metainfo &m);

InfoHash sha1(std::string_view data);

struct BuildFile {
    std::vector<std::string> path; // empty: single-file torrent (only file)
    std::string_view data;         // contents (not owned)
};

// Builds a .torrent.  One file with an empty path gives a single-file
// torrent named `name`; otherwise a multi-file torrent with directory `name`.
// trackers[0] becomes "announce"; more than one also fills "announce-list"
// (one tracker per tier).  Throws Error(INVAL, "metainfo", "build") on bad
// input.  The result round-trips through parse_metainfo.
std::string build_metainfo(std::string_view name, const std::vector<BuildFile> &files,
                           std::int64_t piece_length,
                           const std::vector<std::string> &trackers = {});

// The .torrent bytes for content already hashed (`pieces`: the
// concatenated SHA-1s).  single: one file named `name`, files[0].length
// bytes; else a directory `name` holding `files`.  What build_metainfo and
// the seed job's builder (torrent_builder.hpp) both write.
struct TorrentFile {
    std::vector<std::string> path;
    std::int64_t length = 0;
};
std::string encode_torrent(std::string_view name, std::int64_t piece_length, std::string pieces,
                           const std::vector<TorrentFile> &files, bool single,
                           const std::vector<std::string> &trackers);

} // namespace openace::transport
