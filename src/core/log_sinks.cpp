// Console and rotating-file sinks for the central log (DESIGN §7).
#include "core/error.hpp"
#include "core/log.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

namespace openace::core {

namespace {

const char *level_label(LogLevel level) noexcept
{
    switch (level) {
    case LogLevel::Trace: return "TRACE";
    case LogLevel::Debug: return "DEBUG";
    case LogLevel::Info: return "INFO";
    case LogLevel::Warn: return "WARN";
    case LogLevel::Error: return "ERROR";
    case LogLevel::Off: return "OFF";
    }
    return "?";
}

std::string format_line(const LogEntry &e, bool json)
{
    std::string line;
    if (json) {
        // Replace rather than throw: Log::write already sanitises, but a sink
        // may be fed entries built elsewhere.
        line = to_json(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
        line = fmt::format("{} {:<5} [{}] {}", format_log_time(e.time_ms), level_label(e.level),
                           e.component, e.message);
        if (e.job_id != 0)
            line += fmt::format(" (job {})", e.job_id);
    }
    line += '\n';
    return line;
}

class ConsoleSink final : public LogSink {
public:
    ConsoleSink(FILE *out, bool json) : out_(out ? out : stderr), json_(json) {}

    void write(const LogEntry &e) override
    {
        const std::string line = format_line(e, json_);
        std::fwrite(line.data(), 1, line.size(), out_);
        // stdout is fully buffered when piped to a supervisor; without this a
        // crash would lose the lines that explain it.
        std::fflush(out_);
    }

    void flush() override { std::fflush(out_); }

private:
    FILE *out_;
    bool json_;
};

[[noreturn]] void throw_open_error(const std::string &path, int err)
{
    // Through the C constant: <cerrno> defines EIO as a macro, so Errc::IO
    // cannot be spelled in a file that includes it.
    throw_errorf(static_cast<Errc>(OPENACE_EIO), "log", "open", "cannot open log file '{}': {}", path,
                 std::generic_category().message(err));
}

class RotatingFileSink final : public LogSink {
public:
    RotatingFileSink(std::string path, size_t max_bytes, unsigned keep, bool json)
        : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep), json_(json)
    {
        open();
    }

    ~RotatingFileSink() override
    {
        if (file_)
            std::fclose(file_);
    }

    RotatingFileSink(const RotatingFileSink &) = delete;
    RotatingFileSink &operator=(const RotatingFileSink &) = delete;

    void write(const LogEntry &e) override
    {
        const std::string line = format_line(e, json_);
        // A line longer than max_bytes still goes into a fresh file rather
        // than rotating forever.
        if (file_ && size_ > 0 && size_ + line.size() > max_bytes_)
            rotate();
        if (!file_)
            open(); // an earlier rotation failed to reopen: retry, or throw
        const size_t n = std::fwrite(line.data(), 1, line.size(), file_);
        size_ += n;
    }

    void flush() override
    {
        if (file_)
            std::fflush(file_);
    }

private:
    void open()
    {
        // "e": O_CLOEXEC, so child processes (players, transcoders) do not
        // inherit the log file.
        file_ = std::fopen(path_.c_str(), "ae");
        if (!file_)
            throw_open_error(path_, errno);
        if (std::fseek(file_, 0, SEEK_END) == 0) {
            const long pos = std::ftell(file_);
            size_ = pos > 0 ? static_cast<size_t>(pos) : 0;
        } else {
            size_ = 0;
        }
    }

    void rotate()
    {
        std::fclose(file_);
        file_ = nullptr;
        size_ = 0;
        if (keep_ == 0) {
            std::remove(path_.c_str());
        } else {
            // Failures are ignored: a missing older file is normal, and the
            // worst case of a failed rename is one overwritten old file.
            std::remove(numbered(keep_).c_str());
            for (unsigned i = keep_; i > 1; --i)
                std::rename(numbered(i - 1).c_str(), numbered(i).c_str());
            std::rename(path_.c_str(), numbered(1).c_str());
        }
        open();
    }

    std::string numbered(unsigned i) const { return path_ + "." + std::to_string(i); }

    const std::string path_;
    const size_t max_bytes_;
    const unsigned keep_;
    const bool json_;
    FILE *file_ = nullptr;
    size_t size_ = 0;
};

} // namespace

std::unique_ptr<LogSink> make_console_sink(FILE *out, bool json)
{
    return std::make_unique<ConsoleSink>(out, json);
}

std::unique_ptr<LogSink> make_rotating_file_sink(const std::string &path, size_t max_bytes,
                                                 unsigned keep, bool json)
{
    return std::make_unique<RotatingFileSink>(path, max_bytes, keep, json);
}

} // namespace openace::core
