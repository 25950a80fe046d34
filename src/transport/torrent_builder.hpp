// Builds a .torrent from files on disk (the seed job: "builds a torrent
// (piece size chosen from the total size) and seeds it").
//
// The output is byte for byte what build_metainfo (metainfo.hpp) gives for
// the same names and contents held in memory, so both round-trip through
// parse_metainfo and give the same infohash.  Files are read through one
// bounded buffer (1 MiB), never whole.
//
// Threading: synchronous and blocking (it reads every byte); the caller runs
// it on a worker thread (uv_queue_work).  No shared state: calls on different
// threads are independent.
#pragma once

#include "transport/metainfo.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace openace::transport {

// A power of two aiming at 1000-2000 pieces (the smallest one giving at most
// 2000), clamped to [16 KiB, 16 MiB].  16 KiB for total_bytes <= 0.
std::int64_t choose_piece_length(std::int64_t total_bytes);

struct BuiltTorrent {
    std::string torrent;   // the .torrent bytes
    Metainfo metainfo;     // parse_metainfo(torrent)
    std::string root;      // for make_file_storage: the file itself (single
                           // file) or the directory containing the torrent's
                           // directory (multi-file)
};

// Hashes a file (single-file torrent named after it) or a directory tree
// (multi-file torrent named after the directory) in piece order.
//
// Directory trees: regular files only, sorted by their path components (byte
// order); empty files are kept (length 0); empty directories are ignored.
// Symbolic links, special files and names a torrent cannot carry (a
// backslash, a drive-letter look) are skipped and reported through
// skipped(path, why) when given.  The top-level path may itself be a symlink.
//
// piece_length: 0 picks choose_piece_length(total); otherwise used as given
// (> 0).  trackers: as build_metainfo (the first is "announce", more than one
// also fills "announce-list").  progress(done_bytes, total_bytes) runs after
// each piece; returning false cancels.
//
// Throws openace::Error:
//   IO        "seed" "read"   "<path>: <why>"  (missing, unreadable, or a
//                                               file that shrank while read)
//   INVAL     "seed" "build"  "<path>: no files to seed" (nothing regular, or
//                                               only empty files), a bad
//                                               piece_length or name
//   CANCELLED "seed" "build"  "<path>: cancelled"
BuiltTorrent build_torrent_from_path(const std::string &path, const std::vector<std::string> &trackers,
                                     std::int64_t piece_length = 0,
                                     std::function<bool(std::int64_t done, std::int64_t total)> progress = {},
                                     std::function<void(const std::string &path, const std::string &why)> skipped = {});

} // namespace openace::transport
