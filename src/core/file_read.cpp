#include "core/file_read.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace openace::core {

FileRead read_file(const std::string &path, std::size_t max, std::string &out)
{
    FileRead r;
    std::error_code ec;
    r.size = std::filesystem::file_size(path, ec);
    if (ec) {
        r.status = FileRead::Status::Unreadable;
        r.error = ec.message();
        return r;
    }
    if (r.size > max) {
        r.status = FileRead::Status::TooLarge;
        return r;
    }
    std::ifstream f(path, std::ios::binary);
    out.assign(static_cast<std::size_t>(r.size), '\0');
    if (!f || !f.read(out.data(), static_cast<std::streamsize>(out.size()))) {
        r.status = FileRead::Status::Unreadable;
        r.error = errno ? std::strerror(errno) : "short read";
        out.clear();
    }
    return r;
}

} // namespace openace::core
