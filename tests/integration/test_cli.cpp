// The openace command line tool as a user runs it.
#include "command.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

using Run = testcmd::Result;

// Runs the CLI with a shell command line (stderr merged) and a time bound.
Run cli(const std::string &args)
{
    return testcmd::run(std::string(OPENACE_CLI_PATH) + " " + args, 60, true);
}

std::string write_temp(const std::string &name, const std::string &text)
{
    std::string path = "/tmp/openace-cli-test-" + std::to_string(::getpid()) + "-" + name;
    std::ofstream(path) << text;
    return path;
}

// Runs a bash script, bounded by `timeout_s`; its standard output.
std::string run_script(const std::string &path, int timeout_s)
{
    FILE *p = ::popen(("timeout " + std::to_string(timeout_s) + " bash " + path).c_str(), "r");
    REQUIRE(p);
    std::string res;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        res.append(buf, n);
    ::pclose(p);
    return res;
}

} // namespace

TEST_CASE("cli: --version and --help work")
{
    auto v = cli("--version");
    CHECK(v.code == 0);
    CHECK(v.out.find("openace 0.") != std::string::npos);
    auto h = cli("--help");
    CHECK(h.code == 0);
    CHECK(h.out.find("serve") != std::string::npos);
    CHECK(h.out.find("probe") != std::string::npos);
}

TEST_CASE("cli: probe --json prints event lines ending with the done event")
{
    auto cfg = write_temp("probe.toml", "[engine]\nhttp_address = \"127.0.0.1:0\"\n[logging]\nconsole = false\n");
    auto r = cli("probe --json --config " + cfg);
    CHECK(r.code == 0);
    std::istringstream in(r.out);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{')
            last = line;
    REQUIRE(!last.empty());
    auto j = nlohmann::json::parse(last);
    CHECK(j["final"] == true);
    CHECK(j["data"]["state"] == "done");
    CHECK(j["data"]["result"]["ffmpeg"]["libavformat"].is_string());
}

TEST_CASE("cli: bad flags and bad config print one line and exit 2")
{
    auto flag = cli("serve --no-such-flag");
    CHECK(flag.code == 2);
    auto cfg = write_temp("bad.toml", "[engine]\nhttp_address = \"127.0.0.1:0\"\nlog_levl = \"info\"\n");
    auto bad = cli("serve --config " + cfg);
    CHECK(bad.code == 2);
    CHECK(bad.out.find("engine.log_levl") != std::string::npos);
    CHECK(bad.out.find(":3") != std::string::npos);
    CHECK(std::count(bad.out.begin(), bad.out.end(), '\n') == 1);
    auto lvl = cli("probe --log-level loud");
    CHECK(lvl.code == 2);
    CHECK(lvl.out.find("loud") != std::string::npos);
}

TEST_CASE("cli: serve prints its address, answers HTTP without loading FFmpeg and stops on SIGTERM")
{
    auto cfg = write_temp("serve.toml", "[engine]\nhttp_address = \"127.0.0.1:0\"\n[logging]\nconsole = false\n");
    std::string out = "/tmp/openace-cli-serve-" + std::to_string(::getpid()) + ".out";
    // Start it, wait for the address line, ask get_version over bash's
    // /dev/tcp, then SIGTERM and collect the exit status.
    std::string script = std::string(OPENACE_CLI_PATH) + " serve --config " + cfg + " > " + out +
                         " 2>&1 &\n"
                         "pid=$!\n"
                         "for i in $(seq 1 100); do grep -q 'serving on' " + out +
                         " && break; sleep 0.1; done\n"
                         "addr=$(grep -o 'http://[0-9.:]*' " + out + " | head -1)\n"
                         "hp=${addr#http://}\n"
                         "exec 3<>/dev/tcp/${hp%:*}/${hp#*:}\n"
                         "printf 'GET /webui/api/service?method=get_version HTTP/1.0\\r\\n\\r\\n' >&3\n"
                         "cat <&3\n"
                         "echo \"ffmpeg_maps=$(grep -c libavformat /proc/$pid/maps)\"\n"
                         "kill -TERM $pid\n"
                         "wait $pid\n"
                         "echo \"exit=$?\"\n";
    auto path = write_temp("serve.sh", script);
    std::string res = run_script(path, 60);
    CHECK(res.find(" 200 OK") != std::string::npos);
    CHECK(res.find("\"platform\":\"linux\"") != std::string::npos);
    CHECK(res.find("exit=0") != std::string::npos);
    // Serving the API never maps FFmpeg: the media module loads on first use.
    CHECK(res.find("ffmpeg_maps=0") != std::string::npos);
}

TEST_CASE("cli: demo broadcasts a test channel whose printed URLs ffprobe plays, and stops on SIGTERM")
{
    std::string dir = "/tmp/openace-cli-demo-" + std::to_string(::getpid());
    std::string out = dir + ".out";
    // scripts/run runs `openace demo`; here on free ports and its own state dir.
    // Under ASan: full malloc stacks, so that tests/lsan.supp can name the
    // FFmpeg lavfi device's own leak when the engine stops mid-read.
    std::string script = "rm -rf " + dir + "\nASAN_OPTIONS=\"${ASAN_OPTIONS}:fast_unwind_on_malloc=0\" " +
                         std::string(OPENACE_CLI_PATH) + " demo --state-dir " + dir +
                         " --listen-port 0 --set engine.http_address=127.0.0.1:0"
                         " --set engine.tcp_api_address= --set logging.console=false > " + out + " 2>&1 &\n"
                         "pid=$!\n"
                         "for i in $(seq 1 300); do grep -q 'VLC, mpv' " + out + " && break; sleep 0.1; done\n"
                         "cat " + out + "\n"
                         "url=$(grep -o 'http://[0-9.:]*/ace/getstream?id=[0-9a-f]*' " + out + " | head -1)\n"
                         "hls=$(grep -o 'http://[0-9.:]*/ace/manifest.m3u8?id=[0-9a-f]*' " + out + " | head -1)\n"
                         "echo \"codecs=$(timeout 30 ffprobe -v error -show_entries stream=codec_name -of csv=p=0 \"$url\""
                         " | grep . | sort -u | tr '\\n' ,)\"\n"
                         "echo \"hls=$(timeout 30 ffprobe -v error -show_entries stream=codec_name -of csv=p=0 \"$hls\""
                         " | grep . | sort -u | tr '\\n' ,)\"\n"
                         "kill -TERM $pid\n"
                         "wait $pid\n"
                         "echo \"exit=$?\"\n"
                         "rm -rf " + dir + " " + out + "\n";
    auto path = write_temp("demo.sh", script);
    std::string res = run_script(path, 120);
    INFO(res);
    CHECK(res.find("link          acestream://") != std::string::npos);
    CHECK(res.find("codecs=aac,h264,") != std::string::npos);
    CHECK(res.find("hls=aac,h264,") != std::string::npos);
    CHECK(res.find("exit=0") != std::string::npos);
}
