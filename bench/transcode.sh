#!/usr/bin/env bash
# Transcode benchmark: a 3-rung ABR ladder (480p/360p/240p, libx264
# veryfast, keyframes every 6 s, AAC copied) from a 30 s 720p H.264+AAC
# source to VOD HLS, `openace segment --ladder` against `ffmpeg` doing the
# same ladder in one run on the same file.  Prints one ratio line per
# figure (real-time factor, peak memory).  Never fails because the machine
# is slow: only a missing tool or a failed run is an error.
#
#   bench/transcode.sh [path/to/openace]     (or OPENACE=path; default: build*/openace)
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
cli=${1:-${OPENACE:-}}
if [ -z "$cli" ]; then
    for c in "$here"/build/openace "$here"/build*/openace; do
        [ -x "$c" ] && { cli=$c; break; }
    done
fi
[ -n "$cli" ] && [ -x "$cli" ] || { echo "transcode bench: openace CLI not found (build it, or pass its path)" >&2; exit 2; }
for t in ffmpeg ffprobe /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "transcode bench: $t is required" >&2; exit 2; }
done

work=$(mktemp -d /tmp/openace-bench-transcode-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
duration=30
src="$work/src.mp4"
timeout 300 ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=1280x720:rate=25,noise=alls=4:allf=t" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t $duration \
    -c:v libx264 -preset ultrafast -crf 23 -g 50 -pix_fmt yuv420p -c:a aac -b:a 128k "$src" \
    || { echo "transcode bench: cannot make the source" >&2; exit 1; }

# seconds and peak RSS (KiB) of a command, from GNU time.
measure() { # out_prefix cmd...
    local prefix=$1; shift
    local start end
    start=$(date +%s.%N)
    timeout 900 /usr/bin/time -v -o "$work/$prefix.time" "$@" >"$work/$prefix.log" 2>&1
    local rc=$?
    end=$(date +%s.%N)
    if [ $rc -ne 0 ]; then
        echo "transcode bench: $prefix failed (exit $rc):" >&2
        tail -20 "$work/$prefix.log" >&2
        exit 1
    fi
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }' >"$work/$prefix.secs"
    awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$work/$prefix.time" >"$work/$prefix.rss"
}

# OpenAce: the transcode job through the CLI.
measure openace "$cli" segment "$src" "$work/oa" --ladder 480p,360p,240p --segment-duration 6

# FFmpeg: decode once, split, scale, three libx264 encodes with the same
# settings (bitrates, VBV, keyframes forced every 6 s, no scene cuts),
# audio copied, three HLS outputs.
mkdir -p "$work/ff/480p" "$work/ff/360p" "$work/ff/240p"
x264="-c:v libx264 -preset veryfast -x264-params scenecut=0:open-gop=0 -force_key_frames expr:gte(t,n_forced*6)"
hls="-c:a copy -f hls -hls_time 6 -hls_playlist_type vod -hls_segment_filename"
measure ffmpeg ffmpeg -nostdin -v error -y -i "$src" -filter_complex \
    "[0:v]split=3[a][b][c];[a]scale=854:480[v1];[b]scale=640:360[v2];[c]scale=426:240[v3]" \
    -map "[v1]" -map 0:a $x264 -b:v 1400k -maxrate 2100k -bufsize 2800k $hls "$work/ff/480p/s%05d.ts" "$work/ff/480p/index.m3u8" \
    -map "[v2]" -map 0:a $x264 -b:v 800k -maxrate 1200k -bufsize 1600k $hls "$work/ff/360p/s%05d.ts" "$work/ff/360p/index.m3u8" \
    -map "[v3]" -map 0:a $x264 -b:v 400k -maxrate 600k -bufsize 800k $hls "$work/ff/240p/s%05d.ts" "$work/ff/240p/index.m3u8"

# Both must have produced the ladder.
for r in 480p 360p 240p; do
    for d in oa ff; do
        [ -s "$work/$d/$r/index.m3u8" ] || { echo "transcode bench: $d produced no $r playlist" >&2; exit 1; }
    done
done

oa_s=$(cat "$work/openace.secs"); ff_s=$(cat "$work/ffmpeg.secs")
oa_rss=$(cat "$work/openace.rss"); ff_rss=$(cat "$work/ffmpeg.rss")
cores=$(nproc)
awk -v d=$duration -v oa=$oa_s -v ff=$ff_s -v c=$cores 'BEGIN {
    printf "transcode 3-rung ladder (480p/360p/240p from 30 s 720p, %d cores): real-time factor openace %.2fx, ffmpeg %.2fx, ratio %.2f (openace/ffmpeg, goal >= 1.0)\n", c, d/oa, d/ff, ff/oa }'
awk -v oa=$oa_rss -v ff=$ff_rss 'BEGIN {
    printf "transcode 3-rung ladder peak memory: openace %.1f MiB, ffmpeg %.1f MiB, ratio %.2f (ffmpeg/openace, goal >= 1.0)\n", oa/1024, ff/1024, ff/oa }'
exit 0
