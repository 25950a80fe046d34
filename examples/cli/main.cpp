// openace: a thin command line over the engine (CLI11).
//
//   openace [--config F] [--log-level L] [--json] serve
//   openace [--config F] [--log-level L] [--json] probe
//   openace [--config F] [--log-level L] [--json] segment INPUT OUTDIR
//           [--segment-duration S] [--ladder 1080p,720p,480p] [--realtime] [--loop] [--format F]
//   openace [...] play INFOHASH|MAGNET|FILE.torrent [-o FILE|-] [--file-index N]
//   openace [...] play acestream://ID|FILE.acelive [-o FILE|-] [--tracker URL]...
//   openace [...] broadcast SOURCE [--name N] [--piece-duration S] [--tracker URL]...
//                 [--save FILE.acelive] [--key FILE] [--loop] [--no-realtime]
//   openace [...] seed PATH [--tracker URL]... [--save FILE.torrent] [--piece-length N]
//
// Engine flags, before or after the subcommand: --listen-port P, --peer HOST:PORT
// (repeatable), --state-dir DIR, --set KEY=VALUE (any config key, repeatable).
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
#include <functional>
#include <iostream>
#include <sstream>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
    std::string config_path;
    std::string log_level;
    bool json = false;
    int listen_port = -1;
    std::vector<std::string> peers;
    std::string state_dir;
    std::vector<std::string> sets; // KEY=VALUE
};

// defaults < config file < flags
openace::core::Config build_config(const Options &o)
{
    auto cfg = o.config_path.empty() ? openace::core::default_config()
                                     : openace::core::load_config_file(o.config_path);
    if (!o.log_level.empty())
        openace::core::set_config_value(cfg, "engine.log_level", o.log_level);
    for (const auto &kv : o.sets) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
            throw openace::Error(openace::Errc::CONFIG, "config", "set",
                                 "--set '" + kv + "': expected KEY=VALUE, e.g. transport.embedded_tracker=true");
        openace::core::set_config_value(cfg, kv.substr(0, eq), kv.substr(eq + 1));
    }
    if (o.listen_port >= 0)
        openace::core::set_config_value(cfg, "transport.listen_port", std::to_string(o.listen_port));
    if (!o.state_dir.empty())
        openace::core::set_config_value(cfg, "engine.state_dir", o.state_dir);
    for (const auto &p : o.peers) {
        auto peers = cfg.transport.peers;
        peers.push_back(p);
        std::string joined;
        for (const auto &x : peers)
            joined += (joined.empty() ? "" : ",") + x;
        openace::core::set_config_value(cfg, "transport.peers", joined);
    }
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
        if (p.contains("state") && p["state"].is_string())
            text += p["state"].get<std::string>() + "  ";
        if (p.contains("peers") && p["peers"].is_number())
            text += std::to_string(p["peers"].get<long long>()) + " peers  ";
        if (p.contains("download_rate") && p["download_rate"].is_number())
            text += "down " + fmt_rate(p["download_rate"].get<double>()) + "  ";
        if (p.contains("upload_rate") && p["upload_rate"].is_number())
            text += "up " + fmt_rate(p["upload_rate"].get<double>()) + "  ";
        if (p.contains("buffer_bytes") && p["buffer_bytes"].is_number())
            text += "buffer " + fmt_bytes(p["buffer_bytes"].get<double>()) + "  ";
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
    static std::string fmt_bytes(double v)
    {
        const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        while (v >= 1024 && u < 4) {
            v /= 1024;
            ++u;
        }
        return fmt_number(v, u == 0 ? 0 : 1) + " " + units[u];
    }
    static std::string fmt_rate(double v) { return fmt_bytes(v) + "/s"; }
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

// Runs one job to its end.  `on_progress` sees every progress object (the
// seed command prints its magnet link from it); the result goes to stdout,
// or to stderr when stdout carries the job's data (play -o -).
int run_engine_job(openace::Engine &engine, const std::string &job_json, bool json,
                   bool show_progress = false, const std::function<void(const nlohmann::json &)> &on_progress = {},
                   bool result_to_stderr = false)
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
        if (ev->id == OPENACE_EVENT_JOB_PROGRESS) {
            auto j = nlohmann::json::parse(ev->json, nullptr, false);
            if (on_progress && j.is_object() && j.contains("progress"))
                on_progress(j["progress"]);
            // Live chat lines, for people (JSON lines carry them anyway).
            if (!json && j.is_object() && j.contains("progress") && j["progress"].contains("chat")) {
                progress.end();
                for (const auto &line : j["progress"]["chat"])
                    std::cerr << "chat " << line.value("from", "?") << ": " << line.value("text", "") << "\n";
            }
        }
        print_event(*ev, json && !result_to_stderr, show_progress ? &progress : nullptr);
        if (!ev->final)
            continue;
        auto j = nlohmann::json::parse(ev->json);
        if (j.value("state", "") == "done") {
            if (result_to_stderr)
                std::cerr << j["result"].dump(json ? -1 : 2) << std::endl;
            else if (!json)
                std::cout << j["result"].dump(2) << std::endl;
            return 0;
        }
        if (j.value("state", "") == "cancelled") {
            progress.end();
            return 0; // stopped by the user (Ctrl-C)
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

// `openace demo` (scripts/run): this engine broadcasts a lavfi test
// channel and serves the API; players open the printed URLs.
int demo(openace::Engine &engine, bool json)
{
    nlohmann::json job = {{"type", "broadcast"},
                          {"source", "lavfi:testsrc2=size=640x360:rate=25[out0];"
                                     "sine=frequency=440:beep_factor=4:sample_rate=48000[out1]"},
                          {"name", "OpenAce test channel"}};
    bool announced = false;
    auto show = [&](const nlohmann::json &p) {
        if (announced || json)
            return;
        announced = true;
        const std::string base = "http://" + engine.http_address();
        const std::string id = p.value("content_id", "");
        std::cout << "OpenAce demo: a live test channel broadcast by this engine (Ctrl-C to stop)\n"
                  << "  link          " << p.value("link", "") << "\n"
                  << "  VLC, mpv      " << base << "/ace/getstream?id=" << id << "\n"
                  << "  HLS           " << base << "/ace/manifest.m3u8?id=" << id
                  << "   (Safari, or any hls.js page in a browser)\n"
                  << "  Acexy (JSON)  " << base << "/ace/getstream?id=" << id << "&format=json\n"
                  << "  engine status " << base << "/server/api?method=get_status\n"
                  << "  another engine joins with: openace play " << p.value("link", "")
                  << " --peer 127.0.0.1:" << p.value("listen_port", 0) << " --state-dir DIR -o out.ts\n"
                  << std::flush;
    };
    return run_engine_job(engine, job.dump(), json, !json, show);
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
    app.add_option("--listen-port", o.listen_port, "P2P listen port (0 = any free port)")->check(CLI::Range(0, 65535));
    app.add_option("--peer", o.peers, "HOST:PORT of a peer every job connects to (repeatable)");
    app.add_option("--state-dir", o.state_dir, "State directory: identity key, certificate, disk cache");
    app.add_option("--set", o.sets, "Set any config key: KEY=VALUE (repeatable)");
    // Options of the main app are accepted after the subcommand too.
    app.fallthrough();

    auto *serve_cmd = app.add_subcommand("serve", "Run the engine and its HTTP API until SIGINT/SIGTERM");
    auto *probe_cmd = app.add_subcommand("probe", "Print version, build, FFmpeg and hardware facts");
    auto *demo_cmd = app.add_subcommand(
        "demo", "Broadcast a built-in live test channel and serve the Ace Stream API: prints the links to play");

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

    struct {
        std::string source, output = "-";
        std::vector<std::string> trackers;
        int file_index = -1;
    } play;
    auto *play_cmd = app.add_subcommand(
        "play", "Play a live stream, or one file of a torrent while it downloads (to a file or - for stdout)");
    play_cmd->add_option("SOURCE", play.source,
                         "acestream://ID or FILE.acelive (live); 40-hex infohash, magnet link or .torrent file")
        ->required();
    play_cmd->add_option("-o,--output", play.output, "Output file, or - for standard output (default)");
    play_cmd->add_option("--file-index", play.file_index, "Which file of a multi-file torrent (default: the largest)")
        ->check(CLI::NonNegativeNumber);
    play_cmd->add_option("--tracker", play.trackers, "Tracker announce URL (repeatable)");

    struct {
        std::string source, name, save, key;
        std::vector<std::string> trackers;
        double piece_duration = 0;
        bool loop = false, no_realtime = false;
    } bc;
    auto *broadcast_cmd = app.add_subcommand(
        "broadcast", "Broadcast SOURCE live to a swarm: prints its acestream:// link, runs until Ctrl-C");
    broadcast_cmd->add_option("SOURCE", bc.source, "File, URL or lavfi graph (lavfi:testsrc2=size=640x360:rate=25)")
        ->required();
    broadcast_cmd->add_option("--name", bc.name, "Name shown to viewers (default: the file name)");
    broadcast_cmd->add_option("--piece-duration", bc.piece_duration, "Seconds of media per piece (default 1)")
        ->check(CLI::Range(0.1, 60.0));
    broadcast_cmd->add_option("--tracker", bc.trackers, "Tracker announce URL (repeatable)");
    broadcast_cmd->add_option("--save", bc.save, "Also write the descriptor (.acelive) here");
    broadcast_cmd->add_option("--key", bc.key, "Broadcaster key (PEM; default: the engine's key in the state dir)");
    broadcast_cmd->add_flag("--loop", bc.loop, "Restart a file source at its end");
    broadcast_cmd->add_flag("--no-realtime", bc.no_realtime, "Read the source as fast as it comes (live sources)");

    struct {
        std::string path, save;
        std::vector<std::string> trackers;
        int64_t piece_length = 0;
    } seed;
    auto *seed_cmd = app.add_subcommand("seed", "Make a torrent of PATH and seed it until Ctrl-C");
    seed_cmd->add_option("PATH", seed.path, "File or directory to seed")->required();
    seed_cmd->add_option("--tracker", seed.trackers, "Tracker announce URL (repeatable)");
    seed_cmd->add_option("--save", seed.save, "Also write the .torrent file here");
    seed_cmd->add_option("--piece-length", seed.piece_length, "Piece size in bytes (default: chosen from the size)");

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
    // (Unless an address was asked for: `seed` may serve the embedded tracker.)
    const bool serves = *serve_cmd || *demo_cmd;
    if (!serves && cfg.engine.http_address == openace::core::default_config().engine.http_address)
        cfg.engine.http_address = "127.0.0.1:0";
    if (!serves && cfg.engine.tcp_api_address == openace::core::default_config().engine.tcp_api_address)
        cfg.engine.tcp_api_address = "";
    try {
        openace::Engine engine(openace::core::to_json(cfg, false).dump());
        if (*serve_cmd)
            return serve(engine, o.json);
        if (*probe_cmd)
            return run_engine_job(engine, R"({"type":"probe"})", o.json);
        if (*demo_cmd)
            return demo(engine, o.json);
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
        if (*play_cmd) {
            nlohmann::json job = {{"type", "play"}, {"output", play.output}};
            const std::string &src = play.source;
            auto ends_with = [&](std::string_view suffix) {
                return src.size() >= suffix.size() && src.compare(src.size() - suffix.size(), suffix.size(), suffix) == 0;
            };
            if (!play.trackers.empty())
                job["trackers"] = play.trackers;
            if (src.rfind("acestream:", 0) == 0)
                job["content_id"] = src;
            else if (ends_with(".acelive"))
                job["descriptor"] = src;
            else if (src.rfind("magnet:", 0) == 0)
                job["magnet"] = src;
            else if (src.size() == 40 && src.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos)
                job["infohash"] = src;
            else
                job["torrent"] = src;
            if (play.file_index >= 0)
                job["file_index"] = play.file_index;
            return run_engine_job(engine, job.dump(), o.json, !o.json, {}, play.output == "-");
        }
        if (*broadcast_cmd) {
            nlohmann::json job = {{"type", "broadcast"}, {"source", bc.source}};
            if (!bc.name.empty())
                job["name"] = bc.name;
            if (bc.piece_duration > 0)
                job["piece_duration"] = bc.piece_duration;
            if (!bc.trackers.empty())
                job["trackers"] = bc.trackers;
            if (!bc.save.empty())
                job["save"] = bc.save;
            if (!bc.key.empty())
                job["key"] = bc.key;
            if (bc.loop)
                job["loop"] = true;
            if (bc.no_realtime)
                job["realtime"] = false;
            bool announced = false;
            auto show = [&](const nlohmann::json &p) {
                if (announced || o.json)
                    return;
                announced = true;
                std::cout << "content_id " << p.value("content_id", "") << "\n"
                          << "link " << p.value("link", "") << "\n"
                          << "port " << p.value("listen_port", 0) << "\n";
                if (p.contains("descriptor") && p["descriptor"].is_string())
                    std::cout << "descriptor " << p["descriptor"].get<std::string>() << "\n";
                std::cout << std::flush;
            };
            return run_engine_job(engine, job.dump(), o.json, !o.json, show);
        }
        if (*seed_cmd) {
            nlohmann::json job = {{"type", "seed"}, {"path", seed.path}};
            if (!seed.trackers.empty())
                job["trackers"] = seed.trackers;
            if (!seed.save.empty())
                job["save_torrent"] = seed.save;
            if (seed.piece_length > 0)
                job["piece_length"] = seed.piece_length;
            bool announced = false;
            auto show = [&](const nlohmann::json &p) {
                if (announced || p.value("state", "") != "seeding" || o.json)
                    return;
                announced = true;
                std::cout << "infohash " << p.value("infohash", "") << "\n"
                          << "magnet " << p.value("magnet", "") << "\n"
                          << "port " << p.value("listen_port", 0) << std::endl;
            };
            return run_engine_job(engine, job.dump(), o.json, !o.json, show);
        }
    } catch (const openace::Error &e) {
        std::cerr << "openace: " << e.what() << "\n";
        return e.code() == openace::Errc::CONFIG ? 2 : 1;
    }
    return 0;
}
