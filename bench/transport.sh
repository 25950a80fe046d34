#!/usr/bin/env bash
# BitTorrent transport benchmark (issue: "OpenAce vs libtorrent as the
# downloader from a libtorrent seeder"): the same file, piece size and
# loopback for both, in the same run.  Prints one ratio line per figure,
# then all of them again as a summary:
#
#   download rate: openace X MB/s, libtorrent Y MB/s, ratio X/Y (goal >= 1.5)
#   first byte: openace A s, libtorrent B s, ratio A/B (lower is better, goal <= 0.5)
#   cpu per GB: openace X s, libtorrent Y s, ratio X/Y (lower is better)
#   idle connections: openace X KB each, libtorrent Y KB each, ratio X/Y (goal < 16 KB)
#
# The work is done by bench/transport_bench.py (see its docstring for how
# each figure is measured) under /usr/bin/python3, which python3-libtorrent
# is built for.  A slow machine never fails this script; exit 1 means a
# download failed or stalled, exit 2 that a tool is missing.
#
#   OPENACE_CLI=path/to/openace   the CLI (default build/openace, built if missing)
#   BENCH_SIZE_MB=256 BENCH_PIECE_KB=256 BENCH_RUNS=3 BENCH_IDLE_CONNS=200
#   BENCH_RUN_TIMEOUT=120         seconds each download may take
#   BENCH_SOURCE=torrent|magnet   what the downloaders get (magnet: metadata over BEP 9 first)
#   OPENACE_BENCH_CACHE=dir       where the test file is made once (default /tmp/openace-bench)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

cli=${OPENACE_CLI:-${OPENACE:-}}
if [ -z "$cli" ]; then
    cli=$root/build/openace
    if [ ! -x "$cli" ]; then
        echo "transport bench: building $cli (scripts/build build)..." >&2
        "$root/scripts/build" build >&2 || { echo "transport bench: build failed" >&2; exit 2; }
    fi
fi
if [ ! -x "$cli" ]; then
    echo "transport bench: no openace CLI at $cli (set OPENACE_CLI=...)" >&2
    exit 2
fi
if ! /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; then
    echo "transport bench: python3-libtorrent is not installed for /usr/bin/python3" >&2
    exit 2
fi

# Hundreds of idle peers need file descriptors on both ends.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export OPENACE_CLI=$cli
exec timeout -k 10 900 /usr/bin/python3 "$here/transport_bench.py" "$@"
