// MainEngine: the engine every other depends on.  Owns the job kinds that
// belong to no media or network engine: "probe".
#pragma once

#include "engine/sub_engine.hpp"

namespace openace::engine {

class MainEngine : public SubEngine {
public:
    explicit MainEngine(EngineContext &ctx);

    bool owns_job(std::string_view type) const override { return type == "probe"; }
    void validate_job(const nlohmann::json &spec) const override;
    void run_job(const JobPtr &job) override;

    // Version and build facts shared by probe, stats and the HTTP API.
    static nlohmann::json build_info();

protected:
    nlohmann::json details() const override;

private:
    size_t probes_in_flight_ = 0;
};

} // namespace openace::engine
