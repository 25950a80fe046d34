// Process CPU and memory, for get_stats and /metrics.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>

namespace openace::core {

struct ProcessStats {
    uint64_t rss_bytes = 0;
    double cpu_user_s = 0, cpu_system_s = 0;
    double cpu_percent = 0; // of one core, since the previous sample
    int64_t threads = 0;
};

class ProcessSampler {
public:
    ProcessSampler();
    ProcessStats sample(); // thread-safe

private:
    std::mutex mu_;
    std::chrono::steady_clock::time_point last_wall_;
    double last_cpu_s_ = 0;
};

nlohmann::json to_json(const ProcessStats &p);

} // namespace openace::core
