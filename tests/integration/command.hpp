// Runs a shell command for a test, bounded by `timeout`, and returns its exit
// status and output.
#pragma once

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace testcmd {

struct Result {
    int code = -1;
    std::string out;
};

// stdout only, or stdout + stderr when merge_stderr.
inline Result run(const std::string &cmd, int timeout_s, bool merge_stderr)
{
    std::string full = "timeout " + std::to_string(timeout_s) + " " + cmd + (merge_stderr ? " 2>&1" : "");
    Result r;
    FILE *p = ::popen(full.c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        r.out.append(buf, n);
    int st = ::pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

} // namespace testcmd
