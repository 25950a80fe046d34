#include "net/file_writer.hpp"

#include "core/error.hpp"
#include "test_loop.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using openace::net::FileWriter;

namespace {

// A write into a pipe whose reader is gone must fail with EPIPE, not kill
// the test binary.
void ignore_sigpipe()
{
    ::signal(SIGPIPE, SIG_IGN);
}

std::string temp_path(const char *name)
{
    char tmpl[] = "/tmp/oa-file-writer-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return std::string(tmpl) + "/" + name;
}

std::string read_file(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Chunks of varied sizes (some empty) whose bytes encode their position,
// so that a reordering or a lost piece shows in the content.
std::vector<std::string> make_chunks(std::size_t count, std::size_t max_size, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::vector<std::string> chunks;
    for (std::size_t i = 0; i < count; ++i) {
        std::string c(rng() % (max_size + 1), '\0');
        for (std::size_t j = 0; j < c.size(); ++j)
            c[j] = static_cast<char>((i * 131 + j) % 251);
        chunks.push_back(std::move(c));
    }
    return chunks;
}

std::string concat(const std::vector<std::string> &chunks)
{
    std::string all;
    for (auto &c : chunks)
        all += c;
    return all;
}

// A pipe whose write end FileWriter opens by path (/proc/self/fd/N opens a
// new, blocking file description of the pipe); the test's own write end is
// closed at once, so the reader sees EOF when the writer closes its fd.
struct Pipe {
    int rd = -1;
    std::string path;
    int wr = -1;
    explicit Pipe(int capacity = 4096)
    {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        rd = p[0];
        wr = p[1];
        ::fcntl(wr, F_SETPIPE_SZ, capacity);
        path = "/proc/self/fd/" + std::to_string(wr);
    }
    void close_write_end()
    {
        if (wr >= 0)
            ::close(wr);
        wr = -1;
    }
    void close_read_end()
    {
        if (rd >= 0)
            ::close(rd);
        rd = -1;
    }
    ~Pipe()
    {
        close_write_end();
        close_read_end();
    }
};

// Reads a pipe in small pieces with short pauses until EOF, an error or the
// deadline; `done` is set when it stops.
struct SlowReader {
    std::string got;
    std::atomic<bool> done{false};
    bool eof = false;
    std::thread th;
    SlowReader(int fd, std::size_t piece, std::chrono::microseconds pause, std::chrono::milliseconds limit)
    {
        th = std::thread([this, fd, piece, pause, limit] {
            const auto deadline = std::chrono::steady_clock::now() + limit;
            std::vector<char> buf(piece);
            while (std::chrono::steady_clock::now() < deadline) {
                const ssize_t n = ::read(fd, buf.data(), buf.size());
                if (n <= 0) {
                    eof = n == 0;
                    break;
                }
                got.append(buf.data(), static_cast<std::size_t>(n));
                std::this_thread::sleep_for(pause);
            }
            done = true;
        });
    }
    ~SlowReader()
    {
        if (th.joinable())
            th.join();
    }
    void join() { th.join(); }
};

// Points fd 1 at another fd for the lifetime of the guard.  No Catch2
// assertion may run while it is active (the console reporter writes to fd 1).
struct StdoutRedirect {
    int saved;
    explicit StdoutRedirect(int fd)
    {
        std::fflush(stdout);
        saved = ::dup(1);
        ::dup2(fd, 1);
    }
    ~StdoutRedirect()
    {
        ::dup2(saved, 1);
        ::close(saved);
    }
};

} // namespace

TEST_CASE("file writer: many writes of varied sizes arrive in order and complete")
{
    TestLoop l;
    const std::string path = temp_path("out.ts");
    const auto chunks = make_chunks(400, 70000, 17);
    const std::string all = concat(chunks);
    auto w = std::make_unique<FileWriter>(&l.loop, path, "test");
    int errors = 0;
    w->on_error = [&](const std::string &) { ++errors; };
    std::uint64_t submitted = 0;
    for (auto &c : chunks) {
        submitted += c.size();
        w->write(c);
        // Whatever is not yet written is queued.
        REQUIRE(w->queued() + w->written() == submitted);
        if (submitted % 7 == 0)
            uv_run(&l.loop, UV_RUN_NOWAIT); // let some complete between writes
    }
    REQUIRE(submitted == all.size());
    REQUIRE(l.run_until([&] { return w->queued() == 0; }, 10s));
    CHECK(w->written() == all.size());
    CHECK(errors == 0);
    w.reset();
    const std::string got = read_file(path);
    CHECK(got.size() == all.size());
    CHECK((got == all)); // no dump of megabytes on failure
    std::remove(path.c_str());
}

TEST_CASE("file writer: an existing file is truncated and empty writes are ignored")
{
    TestLoop l;
    const std::string path = temp_path("old.ts");
    {
        std::ofstream(path) << "old content that must go away";
    }
    FileWriter w(&l.loop, path, "test");
    CHECK(read_file(path).empty());
    w.write("");
    CHECK(w.queued() == 0);
    w.write("new");
    REQUIRE(l.run_until([&] { return w.queued() == 0; }, 5s));
    CHECK(w.written() == 3);
    CHECK(read_file(path) == "new");
    std::remove(path.c_str());
}

TEST_CASE("file writer: writes into a pipe with a slow reader arrive complete and in order")
{
    ignore_sigpipe();
    TestLoop l;
    Pipe p(4096);
    auto w = std::make_unique<FileWriter>(&l.loop, p.path, "test");
    p.close_write_end();
    int errors = 0;
    w->on_error = [&](const std::string &) { ++errors; };
    // Reads of 700 bytes against writes up to 20000: the pool thread's
    // writes block on the full pipe again and again.
    SlowReader r(p.rd, 700, 30us, 10s);
    const auto chunks = make_chunks(60, 20000, 5);
    const std::string all = concat(chunks);
    for (auto &c : chunks)
        w->write(c);
    REQUIRE(l.run_until([&] { return w->queued() == 0; }, 10s));
    CHECK(w->written() == all.size());
    CHECK(errors == 0);
    w.reset(); // closes the writer's fd: the reader sees EOF
    REQUIRE(l.run_until([&] { return r.done.load(); }, 10s));
    r.join();
    CHECK(r.eof);
    CHECK(r.got.size() == all.size());
    CHECK((r.got == all));
}

TEST_CASE("file writer: \"-\" writes to standard output and leaves it open")
{
    TestLoop l;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    std::string got;
    std::uint64_t written = 0;
    bool fd1_open = false;
    {
        StdoutRedirect redirect(p[1]);
        {
            FileWriter w(&l.loop, "-", "test");
            w.write("to stdout\n");
            l.run_until([&] { return w.queued() == 0; }, 5s);
            written = w.written();
        }
        fd1_open = ::fcntl(1, F_GETFD) != -1;
    }
    ::close(p[1]);
    char buf[64];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        got.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    CHECK(written == 10);
    CHECK(got == "to stdout\n");
    CHECK(fd1_open);
}

TEST_CASE("file writer: \"-\" on a non-blocking pipe with a slow reader completes")
{
    // Standard output may be a pipe whose file description another process
    // (or the embedding application's event loop) has set O_NONBLOCK; a full
    // pipe then answers EAGAIN, which is back-pressure, not a write error.
    ignore_sigpipe();
    TestLoop l;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    ::fcntl(p[1], F_SETPIPE_SZ, 4096);
    ::fcntl(p[1], F_SETFL, ::fcntl(p[1], F_GETFL) | O_NONBLOCK);
    const auto chunks = make_chunks(20, 20000, 9);
    const std::string all = concat(chunks);
    std::vector<std::string> errors;
    std::uint64_t written = 0;
    std::size_t queued = 0;
    SlowReader r(p[0], 700, 30us, 10s);
    {
        StdoutRedirect redirect(p[1]);
        FileWriter w(&l.loop, "-", "test");
        w.on_error = [&](const std::string &e) { errors.push_back(e); };
        for (auto &c : chunks)
            w.write(c);
        l.run_until([&] { return w.queued() == 0; }, 10s);
        written = w.written();
        queued = w.queued();
    }
    ::close(p[1]); // fd 1 is restored: the reader now sees EOF
    REQUIRE(l.run_until([&] { return r.done.load(); }, 10s));
    r.join();
    ::close(p[0]);
    INFO("first error: " << (errors.empty() ? std::string("none") : errors.front()));
    CHECK(errors.empty());
    CHECK(queued == 0);
    CHECK(written == all.size());
    CHECK(r.got.size() == all.size());
    CHECK((r.got == all));
}

TEST_CASE("file writer: destroying it with writes queued and one in flight is safe")
{
    ignore_sigpipe();
    std::string first(65536, 'A'), second(30000, 'B'), third(10, 'C');
    SECTION("the reader drains the pipe afterwards: only the write in flight arrives")
    {
        TestLoop l;
        Pipe p(4096);
        bool error_called = false;
        {
            FileWriter w(&l.loop, p.path, "test");
            p.close_write_end();
            w.on_error = [&](const std::string &) { error_called = true; };
            w.write(first); // in flight: blocks on the pool (the pipe holds 4096)
            w.write(second);
            w.write(third);
            CHECK(w.queued() == first.size() + second.size() + third.size());
            uv_run(&l.loop, UV_RUN_NOWAIT);
            CHECK(w.written() == 0);
        }
        SlowReader r(p.rd, 8192, 0us, 10s);
        // The write in flight finishes, its callback drops the last
        // reference and the fd closes: the reader sees EOF.
        REQUIRE(l.run_until([&] { return r.done.load(); }, 10s));
        uv_run(&l.loop, UV_RUN_DEFAULT); // until idle
        r.join();
        CHECK(r.eof);
        CHECK(r.got.size() == first.size());
        CHECK((r.got == first));
        CHECK_FALSE(error_called);
    }
    SECTION("the reader goes away afterwards: the write in flight fails silently")
    {
        TestLoop l;
        Pipe p(4096);
        bool error_called = false;
        {
            FileWriter w(&l.loop, p.path, "test");
            p.close_write_end();
            w.on_error = [&](const std::string &) { error_called = true; };
            w.write(first);
            w.write(second);
            uv_run(&l.loop, UV_RUN_NOWAIT);
        }
        std::this_thread::sleep_for(5ms); // the pool thread is blocked in write()
        p.close_read_end();                // ... which now fails with EPIPE
        uv_run(&l.loop, UV_RUN_DEFAULT);   // until idle
        CHECK_FALSE(error_called);
    }
}

TEST_CASE("file writer: an unwritable path throws an IO error naming the path")
{
    TestLoop l;
    const std::string dir = temp_path("");
    for (const std::string &path : {dir + "missing/out.ts", dir}) {
        INFO(path);
        bool threw = false;
        try {
            FileWriter w(&l.loop, path, "job");
        } catch (const openace::Error &e) {
            threw = true;
            CHECK(e.code() == openace::Errc::IO);
            CHECK(e.component() == "job");
            CHECK(e.operation() == "output");
            CHECK(std::string(e.what()).find("'" + path + "'") != std::string::npos);
        }
        CHECK(threw);
    }
}

TEST_CASE("file writer: a write error is reported once naming the path and later writes are dropped")
{
    ignore_sigpipe();
    TestLoop l;
    Pipe p(65536);
    FileWriter w(&l.loop, p.path, "test");
    p.close_write_end();
    std::vector<std::string> errors;
    w.on_error = [&](const std::string &e) { errors.push_back(e); };

    w.write("hello");
    REQUIRE(l.run_until([&] { return w.queued() == 0; }, 5s));
    REQUIRE(w.written() == 5);
    char buf[16];
    REQUIRE(::read(p.rd, buf, sizeof buf) == 5);

    p.close_read_end();
    w.write("one");
    w.write("two");
    w.write("three");
    REQUIRE(l.run_until([&] { return !errors.empty(); }, 5s));
    CHECK(w.queued() == 0);
    w.write("after");
    CHECK(w.queued() == 0);
    l.run_for(30ms);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find(p.path) == 0);
    CHECK(errors[0].find("pipe") != std::string::npos); // "broken pipe"
    CHECK(w.written() == 5);
}
