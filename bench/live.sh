#!/usr/bin/env bash
# Live swarm benchmark (issue: "a live swarm of 1 broadcaster + N viewers"):
# `openace broadcast` of a ~3 Mbit/s stream on loopback and N `openace play`
# viewers that find each other through the broadcaster's embedded tracker,
# against the direct baseline (every viewer pulling from the broadcaster).
# Prints one line per figure with its goal and a ratio to it, then all of
# them again as a summary:
#
#   startup (N=30): median A s, max B s, goal < 1.5 s, ratio A/1.5
#   live lag (N=30): p50 median A s, p95 median B s, worst p95 C s, goal p95 < 2.3 s, ratio B/2.3
#   continuity (N=30): X % (...), goal >= 99.5 %, ratio X/99.5
#   P2P offload (N=30): X % (...), goal >= 95 %, ratio X/95
#   cpu (N=30): broadcaster A cores, viewers B cores each (...), load L1 L5 L15
#   broadcaster upload (N=30): openace Ax bitrate, direct Bx bitrate, ratio A/B
#
# (the same lines with "N=30, direct" for the baseline). The work is done by
# bench/live_bench.py (see its docstring for how each figure is measured).
# A slow machine never fails this script; exit 1 means a process died or a
# viewer never played, exit 2 that a tool or `openace broadcast` is missing.
#
#   OPENACE_CLI=path/to/openace   the CLI (default: build/openace)
#   BENCH_VIEWERS="10 30"         swarm sizes, one run each (and one direct)
#   BENCH_SECONDS=60              seconds each swarm runs after its last viewer joined
#   BENCH_MODES="openace direct"  which swarms to run
#   BENCH_JOIN_GAP=0.2 BENCH_WARM=5 BENCH_INPUT=file BENCH_SET="KEY=VALUE ..."
#   BENCH_LOG_LEVEL=warn KEEP=1
#   OPENACE_BENCH_CACHE=dir       where the source file is made once (default /tmp/openace-bench)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

has_broadcast() {
    [ -x "$1" ] && "$1" --help 2>&1 | grep -Eq '^[[:space:]]+broadcast\b'
}

cli=${OPENACE_CLI:-${OPENACE:-}}
if [ -z "$cli" ]; then
    cli=$root/build/openace
fi
if [ -z "$cli" ] || ! has_broadcast "$cli"; then
    echo "live bench: no openace CLI with a \`broadcast\` subcommand" \
         "($cli); build it (scripts/build build) or set OPENACE_CLI=..." >&2
    exit 2
fi
for tool in ffmpeg ffprobe; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "live bench: $tool is not installed" >&2
        exit 2
    fi
done

# A broadcaster and up to 30 viewers, each with sockets to many others.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Whole-run limit: each swarm's seconds plus start, joins and stops, twice
# (openace and direct) per size, and the source made once.
seconds=${BENCH_SECONDS:-60}
seconds=${seconds%%.*}
case $seconds in ''|*[!0-9]*) seconds=60 ;; esac
limit=900
for n in ${BENCH_VIEWERS:-10 30}; do
    case $n in ''|*[!0-9]*) n=30 ;; esac
    limit=$((limit + 2 * (seconds + 120 + n)))
done

export OPENACE_CLI=$cli
exec timeout -k 15 "$limit" /usr/bin/python3 "$here/live_bench.py" "$@"
