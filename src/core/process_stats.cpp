#include "core/process_stats.hpp"

#include <uv.h>

#include <fstream>
#include <string>

namespace openace::core {

static double cpu_seconds(double *user, double *sys)
{
    uv_rusage_t ru{};
    if (uv_getrusage(&ru) != 0)
        return 0;
    *user = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6;
    *sys = double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;
    return *user + *sys;
}

static int64_t thread_count()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Threads:", 0) == 0)
            return std::stoll(line.substr(8));
    return 0;
}

ProcessSampler::ProcessSampler() : last_wall_(std::chrono::steady_clock::now())
{
    double u, s;
    last_cpu_s_ = cpu_seconds(&u, &s);
}

ProcessStats ProcessSampler::sample()
{
    ProcessStats p;
    size_t rss = 0;
    if (uv_resident_set_memory(&rss) == 0)
        p.rss_bytes = rss;
    double cpu = cpu_seconds(&p.cpu_user_s, &p.cpu_system_s);
    p.threads = thread_count();
    std::lock_guard lk(mu_);
    auto now = std::chrono::steady_clock::now();
    double wall = std::chrono::duration<double>(now - last_wall_).count();
    if (wall > 0.05) {
        p.cpu_percent = 100.0 * (cpu - last_cpu_s_) / wall;
        last_wall_ = now;
        last_cpu_s_ = cpu;
    }
    return p;
}

nlohmann::json to_json(const ProcessStats &p)
{
    return {{"rss_bytes", p.rss_bytes},
            {"cpu_user_seconds", p.cpu_user_s},
            {"cpu_system_seconds", p.cpu_system_s},
            {"cpu_seconds", p.cpu_user_s + p.cpu_system_s},
            {"cpu_percent", p.cpu_percent},
            {"threads", p.threads}};
}

} // namespace openace::core
