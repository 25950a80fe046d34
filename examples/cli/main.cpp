// openace: a thin command line over the engine (CLI11).
//
//   openace [--config F] [--log-level L] [--json] serve
//   openace [--config F] [--log-level L] [--json] probe
//   openace [--config F] [--log-level L] [--json] segment INPUT OUTDIR
//           [--segment-duration S] [--ladder 1080p,720p,480p] [--realtime] [--loop] [--format F]
//
// Exit codes: 0 success, 1 the job or engine failed, 2 bad flags or config.
#include <openace/engine.hpp>

#include "core/config.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
    std::string config_path;
    std::string log_level;
    bool json = false;
};

// defaults < config file < flags
openace::core::Config build_config(const Options &o)
{
    auto cfg = o.config_path.empty() ? openace::core::default_config()
                                     : openace::core::load_config_file(o.config_path);
    if (!o.log_level.empty())
        openace::core::set_config_value(cfg, "engine.log_level", o.log_level);
    return cfg;
}

// The live progress line of a long job on stderr: rewritten in place on a
// terminal, a plain line every few seconds otherwise.
struct ProgressLine {
    bool tty = ::isatty(2) == 1;
    bool shown = false; // a line without its newline is on the terminal
    std::chrono::steady_clock::time_point last{};

    void update(const nlohmann::json &p)
    {
        if (!p.is_object())
            return;
        std::string text;
        if (p.contains("percent") && p["percent"].is_number())
            text += fmt_number(p["percent"].get<double>(), 1) + "%  ";
        if (p.contains("seconds_done") && p["seconds_done"].is_number())
            text += fmt_number(p["seconds_done"].get<double>(), 1) + " s done";
        if (p.contains("segments") && p["segments"].is_number())
            text += "  " + std::to_string(p["segments"].get<long long>()) + " segments";
        if (text.empty())
            text = p.dump();
        auto now = std::chrono::steady_clock::now();
        if (tty) {
            std::cerr << "\r\033[K" << text << std::flush;
            shown = true;
        } else if (now - last >= std::chrono::seconds(2)) {
            std::cerr << text << "\n";
            last = now;
        }
    }
    void end()
    {
        if (shown)
            std::cerr << "\n";
        shown = false;
    }
    static std::string fmt_number(double v, int decimals)
    {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return buf;
    }
};

// Prints one event: a JSON line with --json, else a short human line.
void print_event(const openace::Event &ev, bool json, ProgressLine *progress = nullptr)
{
    auto j = nlohmann::json::parse(ev.json, nullptr, false);
    if (json) {
        nlohmann::json line = {{"event", ev.id}, {"job_id", ev.job_id}, {"final", ev.final},
                               {"error", ev.error}, {"data", j}};
        std::cout << line.dump() << std::endl;
        return;
    }
    if (ev.id == OPENACE_EVENT_JOB_PROGRESS && progress && j.is_object()) {
        progress->update(j.value("progress", nlohmann::json::object()));
        return;
    }
    if (ev.id == OPENACE_EVENT_JOB_STATE && j.is_object()) {
        if (progress)
            progress->end();
        std::cerr << "job " << ev.job_id << ": " << j.value("state", "?") << "\n";
    }
}

int run_engine_job(openace::Engine &engine, const std::string &job_json, bool json,
                   bool show_progress = false)
{
    ProgressLine progress;
    int64_t id = engine.submit_job(job_json);
    for (;;) {
        if (g_stop) {
            engine.cancel_job(id);
            g_stop = 0;
        }
        auto ev = engine.wait_event(0.2);
        if (!ev || ev->job_id != id)
            continue;
        print_event(*ev, json, show_progress ? &progress : nullptr);
        if (!ev->final)
            continue;
        auto j = nlohmann::json::parse(ev->json);
        if (j.value("state", "") == "done") {
            if (!json)
                std::cout << j["result"].dump(2) << std::endl;
            return 0;
        }
        if (j.contains("error"))
            std::cerr << "openace: " << j["error"].value("message", "job failed") << "\n";
        return 1;
    }
}

int serve(openace::Engine &engine, bool json)
{
    std::string addr = engine.http_address();
    if (json)
        std::cout << nlohmann::json{{"event", "listening"}, {"http", "http://" + addr}}.dump() << std::endl;
    else
        std::cout << "OpenAce " << openace::version_string() << " serving on http://" << addr
                  << "  (Ctrl-C to stop)" << std::endl;
    while (!g_stop) {
        auto ev = engine.wait_event(0.25);
        if (ev && json)
            print_event(*ev, json);
    }
    if (!json)
        std::cout << "stopping" << std::endl;
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    CLI::App app{"OpenAce: open P2P live and on-demand streaming engine", "openace"};
    app.set_version_flag("--version", std::string("openace ") + openace::version_string());
    app.require_subcommand(1);
    Options o;
    app.add_option("--config", o.config_path, "Configuration file (TOML or JSON)")->check(CLI::ExistingFile);
    app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error or off");
    app.add_flag("--json", o.json, "Machine-readable output: one JSON event per line");
    // Options of the main app are accepted after the subcommand too.
    app.fallthrough();

    auto *serve_cmd = app.add_subcommand("serve", "Run the engine and its HTTP API until SIGINT/SIGTERM");
    auto *probe_cmd = app.add_subcommand("probe", "Print version, build, FFmpeg and hardware facts");

    struct {
        std::string input, output_dir, ladder, format;
        double segment_duration = 0;
        bool realtime = false, loop = false;
    } seg;
    auto *segment_cmd = app.add_subcommand(
        "segment", "Cut INPUT (file, URL or lavfi:graph) into HLS in OUTDIR: index.m3u8 + MPEG-TS segments");
    segment_cmd->add_option("INPUT", seg.input, "Input file, URL, or lavfi graph (lavfi:testsrc2=duration=10)")
        ->required();
    segment_cmd->add_option("OUTDIR", seg.output_dir, "Output directory (created if missing)")->required();
    segment_cmd->add_option("--segment-duration", seg.segment_duration, "Target segment duration in seconds (default 6)")
        ->check(CLI::PositiveNumber);
    segment_cmd->add_option("--ladder", seg.ladder,
                            "Transcode to these renditions instead of copying, e.g. 1080p,720p,480p");
    segment_cmd->add_flag("--realtime", seg.realtime, "Read the input at its native rate");
    segment_cmd->add_flag("--loop", seg.loop, "Restart the input at its end (until Ctrl-C)");
    segment_cmd->add_option("--format", seg.format, "Force the input format (e.g. lavfi, mpegts)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::cerr << "openace: " << e.what() << " (see --help)\n";
        return 2;
    }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    openace::core::Config cfg;
    try {
        cfg = build_config(o);
    } catch (const openace::Error &e) {
        std::cerr << "openace: " << e.what() << "\n";
        return 2;
    }
    // One-shot commands need no API port: never collide with a running
    // `openace serve`.
    if (!*serve_cmd)
        cfg.engine.http_address = "127.0.0.1:0";
    try {
        openace::Engine engine(openace::core::to_json(cfg, false).dump());
        if (*serve_cmd)
            return serve(engine, o.json);
        if (*probe_cmd)
            return run_engine_job(engine, R"({"type":"probe"})", o.json);
        if (*segment_cmd) {
            nlohmann::json job = {{"input", seg.input}, {"output_dir", seg.output_dir}};
            if (seg.ladder.empty()) {
                job["type"] = "segment";
                if (seg.realtime)
                    job["realtime"] = true;
                if (seg.loop)
                    job["loop"] = true;
                if (!seg.format.empty())
                    job["format"] = seg.format;
            } else {
                job["type"] = "transcode";
                nlohmann::json rungs = nlohmann::json::array();
                std::stringstream ss(seg.ladder);
                for (std::string r; std::getline(ss, r, ',');)
                    if (!r.empty())
                        rungs.push_back(r);
                job["ladder"] = rungs;
            }
            if (seg.segment_duration > 0)
                job["segment_duration"] = seg.segment_duration;
            return run_engine_job(engine, job.dump(), o.json, !o.json);
        }
    } catch (const openace::Error &e) {
        std::cerr << "openace: " << e.what() << "\n";
        return e.code() == openace::Errc::CONFIG ? 2 : 1;
    }
    return 0;
}
