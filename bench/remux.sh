#!/usr/bin/env bash
# Remux throughput (issue 3): segmenting a 2-minute 1080p H.264 file to HLS,
# `openace segment` against `ffmpeg -c copy -f hls` on the same file in the
# same run.  Prints one line:
#
#   remux: openace Xs, ffmpeg Ys, ratio Z (goal >= 1.0: ffmpeg time / openace time)
#
# Each tool runs RUNS times (default 5), alternating, and its best time is
# kept, so a busy machine slows both alike.  A slow machine never fails this
# script; only a tool that cannot run does (exit 2) or a remux that fails
# (exit 1).
#
#   OPENACE=path/to/openace   the CLI (default: the first build*/openace here)
#   OPENACE_BENCH_CACHE=dir   where the test file is made once (default /tmp/openace-bench)
#   RUNS=n                    runs per tool
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${RUNS:-5}
cache=${OPENACE_BENCH_CACHE:-/tmp/openace-bench}

openace=${OPENACE:-}
if [ -z "$openace" ]; then
    for c in "$root"/build/openace "$root"/build*/openace; do
        if [ -x "$c" ]; then openace=$c; break; fi
    done
fi
if [ -z "$openace" ] || [ ! -x "$openace" ]; then
    echo "remux: no openace binary (build the openace_cli target or set OPENACE=...)" >&2
    exit 2
fi
for tool in ffmpeg ffprobe; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "remux: $tool is not installed" >&2
        exit 2
    fi
done

mkdir -p "$cache" || exit 2
input=$cache/remux-1080p30-120s.mp4
if [ ! -s "$input" ]; then
    echo "remux: making the 2-minute 1080p H.264+AAC test file once ($input)..." >&2
    # Some noise keeps the bitrate near a real 1080p stream's (~8 Mb/s).
    if ! timeout 1800 ffmpeg -nostdin -v error -y \
        -f lavfi -i "testsrc2=size=1920x1080:rate=30,noise=alls=4:allf=t" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 120 \
        -c:v libx264 -preset ultrafast -crf 26 -g 60 -pix_fmt yuv420p \
        -c:a aac -b:a 128k "$input.part.mp4"; then
        echo "remux: cannot make the test file" >&2
        rm -f "$input.part.mp4"
        exit 2
    fi
    mv "$input.part.mp4" "$input"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/openace-remux-XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }

run_openace() {
    rm -rf "$work/oa"
    timeout 600 "$openace" --log-level error segment "$input" "$work/oa" --segment-duration 6 \
        >"$work/oa.out" 2>"$work/oa.err"
}

run_ffmpeg() {
    rm -rf "$work/ff" && mkdir -p "$work/ff"
    timeout 600 ffmpeg -nostdin -v error -y -i "$input" -c copy -f hls -hls_time 6 \
        -hls_playlist_type vod -hls_segment_filename "$work/ff/segment_%05d.ts" \
        "$work/ff/index.m3u8" >"$work/ff.out" 2>"$work/ff.err"
}

# Warm the page cache so the first run of either tool is not the one that
# reads the disk.
cat "$input" >/dev/null

best_oa=""
best_ff=""
for ((i = 0; i < runs; i++)); do
    t0=$(now)
    if ! run_openace; then
        echo "remux: openace segment failed:" >&2
        cat "$work/oa.err" >&2
        exit 1
    fi
    t1=$(now)
    if ! run_ffmpeg; then
        echo "remux: ffmpeg failed:" >&2
        cat "$work/ff.err" >&2
        exit 1
    fi
    t2=$(now)
    oa=$(echo "$t1 - $t0" | bc -l)
    ff=$(echo "$t2 - $t1" | bc -l)
    if [ -z "$best_oa" ] || [ "$(echo "$oa < $best_oa" | bc -l)" = 1 ]; then best_oa=$oa; fi
    if [ -z "$best_ff" ] || [ "$(echo "$ff < $best_ff" | bc -l)" = 1 ]; then best_ff=$ff; fi
done

# Same media out of both: a sanity check, not a benchmark failure.
segs_oa=$(ls "$work/oa"/segment_*.ts 2>/dev/null | wc -l)
segs_ff=$(ls "$work/ff"/segment_*.ts 2>/dev/null | wc -l)
if [ "$segs_oa" -eq 0 ]; then
    echo "remux: openace wrote no segments" >&2
    exit 1
fi

ratio=$(echo "$best_ff / $best_oa" | bc -l)
printf 'remux: openace %.3fs, ffmpeg %.3fs, ratio %.2f (goal >= 1.0: ffmpeg time / openace time)\n' \
    "$best_oa" "$best_ff" "$ratio"
printf 'remux: %s segments from openace, %s from ffmpeg; best of %s runs each on %s\n' \
    "$segs_oa" "$segs_ff" "$runs" "$(basename "$input")" >&2
exit 0
