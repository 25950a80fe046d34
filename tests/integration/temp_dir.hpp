// A fresh directory under /tmp for one test (or one process), removed with
// everything in it when it goes out of scope.  `path` is empty when it
// could not be made; tests REQUIRE it.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace testdir {

struct TempDir {
    std::string path;
    explicit TempDir(const std::string &what = "test")
    {
        std::string t = "/tmp/openace-" + what + "-" + std::to_string(::getpid()) + "-XXXXXX";
        if (::mkdtemp(t.data()))
            path = t;
    }
    ~TempDir()
    {
        std::error_code ec;
        if (!path.empty())
            std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
};

} // namespace testdir
