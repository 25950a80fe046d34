// Reading a whole small file (a key, a descriptor, a .torrent, an HLS
// segment) with a size cap, without reading or allocating more than the
// file holds.  Blocking: for once-per-job files or bounded sizes only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace openace::core {

struct FileRead {
    enum class Status { Ok, Unreadable, TooLarge } status = Status::Ok;
    std::string error;      // Unreadable: the system's reason ("No such file or directory")
    std::uintmax_t size = 0; // the file's size (TooLarge: how large it is)
};

// Reads `path` into `out` when it is at most `max` bytes.
FileRead read_file(const std::string &path, std::size_t max, std::string &out);

} // namespace openace::core
