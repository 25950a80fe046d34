#!/usr/bin/python3
"""Live swarm benchmark: one `openace broadcast` and N `openace play` viewers.

Run through bench/live.sh (it finds the CLI), or directly with
/usr/bin/python3. The processes are tests/interop/live_swarm.py's
LiveBroadcast and LiveViewer: everything on 127.0.0.1, each process with
its own --state-dir, --listen-port 0 and --json, each viewer writing the
media to a file of its own (viewer 0's is decoded with ffprobe at the end;
the others are only checked against the bytes they say they wrote). For
each N in BENCH_VIEWERS two swarms run one after the other:

  openace  the broadcaster serves the embedded tracker on its HTTP port
           (transport.embedded_tracker=true, engine.http_address); every
           viewer gets --tracker <that>/announce and --peer <broadcaster>,
           so the viewers find each other and relay pieces among themselves.
  direct   the baseline a user would otherwise have: every viewer pulls
           straight from the broadcaster. Viewers get only --peer
           <broadcaster>, PEX is off everywhere and the broadcaster serves
           every copy asked for (live.source_copies raised). Where the CLI
           lacks those keys it cannot be measured, and its figures are the
           ones it has by definition: offload 0, upload N x the bitrate.

The stream is a file of about 3 Mbit/s (H.264 720p25 CBR with noise, AAC;
made once with the ffmpeg CLI, like bench/remux.sh's) broadcast with --loop
in real time: encoding 3 Mbit/s from a lavfi graph costs close to a core,
and 31 processes share 2 cores here. The broadcaster runs until it has
WARM pieces, then the viewers join JOIN_GAP seconds apart, and the swarm
runs SECONDS more after the last one joined. Then every process's last
--json progress line gives the figures:

  startup      each viewer's startup_s (job start to the first verified
               piece written): median and max over viewers; goal < 1.5 s
  live lag     each viewer's lag_p50_s and lag_p95_s (behind the newest
               piece): the median over viewers of each and the worst p95;
               goal p95 < 2 s + 0.3 s per hop, 2.3 s for a flat swarm
  continuity   (pieces_written - pieces_late) / (pieces_written +
               pieces_skipped), summed over all viewers; goal >= 99.5 %
  P2P offload  1 - broadcaster uploaded / bytes delivered to viewers
               (bytes_from_source + bytes_from_peers), whole run; goal
               >= 95 % at N = 30
  broadcaster upload   its uploaded bytes from the last join to the end,
               over stream_rate x those seconds: a multiple of the bitrate
               (direct: ~N), compared as openace/direct
  cpu          CPU seconds of the broadcaster and viewers over the same
               window as a share of a core, and the load average

Ratios are figure/goal (lower is better for startup and lag, higher for
continuity and offload). Per-run details (peers, bytes, exits, the output
check) go to stderr. A slow machine never fails this script; exit 1 means a
process died or exited non-zero on SIGINT, a viewer never played, a ban
among honest peers, viewer 0's output not decoding, or a run that broke;
exit 2 that a tool or `openace broadcast` is missing.

Environment: OPENACE_CLI (default build/openace), BENCH_VIEWERS ("10 30"),
BENCH_SECONDS (60), BENCH_MODES ("openace direct"), BENCH_JOIN_GAP (0.2 s
between viewer starts), BENCH_WARM (pieces the broadcaster has before the
first viewer, 5), BENCH_INPUT (a media file to broadcast instead of the
made one), BENCH_SET ("KEY=VALUE ..." --set for every process, e.g.
"live.join_delay=1.5"; the direct swarm's own keys win over it), BENCH_LOG_LEVEL (warn), OPENACE_BENCH_CACHE (where
the source is made once, /tmp/openace-bench), KEEP=1 keeps the work dir.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "interop"))
import live_swarm  # noqa: E402  (needs the path above)
import peers  # noqa: E402

MB = 1e6
TICKS = os.sysconf("SC_CLK_TCK")
GOAL_STARTUP_S = 1.5
GOAL_LAG_P95_S = 2.3  # 2 s + 0.3 s per hop; a flat swarm is one hop
GOAL_CONTINUITY = 0.995
GOAL_OFFLOAD = 0.95
OFFLOAD_GOAL_AT = 30
SOURCE_SECONDS = 30
SOURCE_KBPS = 3000


def fail_usage(text: str) -> None:
    print(f"live bench: {text}", file=sys.stderr)
    sys.exit(2)


def env_num(name: str, default: float, lo: float, hi: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:
        fail_usage(f"{name}={text!r} is not a number in [{lo:g}, {hi:g}]")
    return value


def env_viewers() -> List[int]:
    text = os.environ.get("BENCH_VIEWERS") or "10 30"
    try:
        counts = [int(w) for w in text.replace(",", " ").split()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= 200 for n in counts):
        fail_usage(f"BENCH_VIEWERS={text!r} is not a list of viewer counts in [1, 200]")
    return counts


def env_modes() -> List[str]:
    modes = (os.environ.get("BENCH_MODES") or "openace direct").split()
    if not modes or any(m not in ("openace", "direct") for m in modes):
        fail_usage(f"BENCH_MODES={' '.join(modes)!r}: each must be openace or direct")
    return modes


def env_sets() -> Dict[str, str]:
    sets = {}
    for item in (os.environ.get("BENCH_SET") or "").split():
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail_usage(f"BENCH_SET item {item!r} is not KEY=VALUE")
        sets[key] = value
    return sets


VIEWERS = env_viewers()
SECONDS = env_num("BENCH_SECONDS", 60, 5, 3600)
MODES = env_modes()
JOIN_GAP = env_num("BENCH_JOIN_GAP", 0.2, 0, 10)
WARM = int(env_num("BENCH_WARM", 5, 1, 100))
EXTRA_SETS = env_sets()
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL") or "warn"
READY_TIMEOUT = 60.0  # broadcaster start to WARM pieces
STOP_GRACE = 10.0


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class RunFailed(Exception):
    pass


# ---------------------------------------------------------------- source ----

def probe_media(path: Path) -> Tuple[float, float]:
    """(duration s, bit rate bit/s) of a media file, from ffprobe."""
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,bit_rate",
                        "-of", "json", str(path)], capture_output=True, text=True, timeout=60)
    try:
        fmt = json.loads(r.stdout)["format"]
        return float(fmt["duration"]), float(fmt["bit_rate"])
    except (ValueError, KeyError, TypeError):
        raise RunFailed(f"ffprobe cannot read {path}: {r.stderr.strip()}") from None


def make_source() -> Path:
    """The stream to broadcast: BENCH_INPUT, or a 30 s 720p25 H.264+AAC
    MPEG-TS file of about 3 Mbit/s (CBR video with filler, so the rate is
    real), keyframe every second, made once in the cache."""
    given = os.environ.get("BENCH_INPUT")
    if given:
        if not Path(given).is_file():
            fail_usage(f"BENCH_INPUT={given!r} is not a file")
        return Path(given)
    cache = Path(os.environ.get("OPENACE_BENCH_CACHE", "/tmp/openace-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"live-720p25-{SOURCE_KBPS}k-{SOURCE_SECONDS}s.ts"
    if path.is_file() and path.stat().st_size > 0:
        return path
    note(f"live bench: making the {SOURCE_SECONDS} s {SOURCE_KBPS} kbit/s source once ({path})")
    video_k = SOURCE_KBPS - 250  # audio 96k and MPEG-TS overhead make up the rest
    part = path.with_suffix(".part.ts")
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25,noise=alls=12:allf=t",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SOURCE_SECONDS),
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-b:v", f"{video_k}k", "-minrate", f"{video_k}k", "-maxrate", f"{video_k}k",
            "-bufsize", f"{video_k // 2}k", "-x264-params", "nal-hrd=cbr:force-cfr=1",
            "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "96k", "-f", "mpegts", str(part)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        part.unlink(missing_ok=True)
        raise RunFailed(f"ffmpeg cannot make the source: {r.stderr.strip()}")
    os.replace(part, path)
    return path


# ----------------------------------------------------------- processes ----

def config_key_ok(key: str, value: str, work: Path) -> bool:
    """Whether the CLI knows config key (an `unknown key` error says not)."""
    r = subprocess.run([str(peers.openace_cli()), "--set", f"{key}={value}", "--listen-port", "0",
                        "--state-dir", str(work / "keycheck"), "--log-level", "off", "probe"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return "unknown key" not in r.stdout + r.stderr


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a running process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds all cores of the machine have been busy (/proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def own_cpu() -> float:
    """user+sys CPU seconds of this script (its reader threads included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def exit_text(rc: Optional[int]) -> str:
    return f"crashed (signal {-rc})" if rc is not None and rc < 0 else f"exited {rc}"


# ------------------------------------------------------------------ runs ----

class Result:
    """What one swarm run measured (None where nothing was measured)."""

    def __init__(self, n: int, mode: str) -> None:
        self.n, self.mode = n, mode
        self.measured = True
        self.startup: List[Optional[float]] = []
        self.lag50: List[float] = []
        self.lag95: List[float] = []
        self.written = self.late = self.skipped = 0
        self.delivered = 0.0          # bytes to viewers, whole run
        self.from_source = 0.0
        self.uploaded = 0.0           # broadcaster, whole run
        self.upload_multiple: Optional[float] = None  # steady window
        self.stream_rate = 0.0        # bytes/s
        self.cpu_line = ""
        self.bench_cpu = 0.0          # this script's CPU seconds at the last join
        self.machine_cpu = 0.0        # the machine's busy CPU seconds then


def name_of(i: int) -> str:
    return "broadcaster" if i < 0 else f"viewer{i:02d}"


def start_broadcaster(n: int, mode: str, source: Path, work: Path) -> live_swarm.LiveBroadcast:
    """The broadcaster, live with WARM pieces signed. openace: it serves the
    embedded tracker. direct: no PEX, and every copy asked for is served."""
    sets: Dict[str, Any] = {}
    if mode == "direct":
        sets = {"transport.pex": "false", "live.source_copies": max(n, 4) * 2,
                "engine.max_peers": max(50, n + 10)}
    b = live_swarm.LiveBroadcast(str(source), name=f"bench-{mode}-{n}",
                                 workdir=work / "broadcaster", embedded_tracker=mode == "openace",
                                 sets={**EXTRA_SETS, **sets}, loop=True,
                                 extra=["--log-level", LOG_LEVEL], ready_timeout=READY_TIMEOUT)
    try:
        b.wait_progress(lambda p: p.get("state") == "live" and (p.get("pieces") or 0) >= WARM,
                        READY_TIMEOUT, f"live with {WARM} signed pieces")
        b.peer  # noqa: B018  (waits for the listen port now, not with the first viewer)
    except BaseException:
        b.close()
        raise
    return b


def start_viewers(b: live_swarm.LiveBroadcast, n: int, mode: str,
                  work: Path) -> List[live_swarm.LiveViewer]:
    """n viewers JOIN_GAP apart, each with --peer <broadcaster> (openace:
    and --tracker <its embedded tracker>), writing the media to a file."""
    trackers = [b.tracker_url] if mode == "openace" else []
    sets = {**EXTRA_SETS, **({"transport.pex": "false"} if mode == "direct" else {})}
    viewers: List[live_swarm.LiveViewer] = []
    try:
        for i in range(n):
            viewers.append(live_swarm.LiveViewer(
                b.content_id or "", peers_=[b.peer], trackers=trackers, sets=sets,
                workdir=work / name_of(i), extra=["--log-level", LOG_LEVEL]))
            time.sleep(JOIN_GAP)
    except BaseException:
        live_swarm.stop_all(viewers, grace=STOP_GRACE)
        raise
    return viewers


def watch(b: live_swarm.LiveBroadcast, viewers: List[live_swarm.LiveViewer], until: float,
          failures: List[str], tag: str) -> None:
    """Sleeps until `until`, noting each viewer that exits early; a dead
    broadcaster ends the run."""
    reported: set = set()
    while time.monotonic() < until:
        if not b.running():
            raise RunFailed(f"{tag}: openace broadcast {exit_text(b.proc.popen.poll())} during "
                            f"the run\n{b.output(tail=20)}")
        for i, v in enumerate(viewers):
            if i not in reported and not v.running():
                reported.add(i)
                final = v.final_event()
                why = json.dumps(final)[:300] if final else " | ".join(
                    v.proc.snapshot("stderr")[-3:])
                failures.append(f"{tag}: {name_of(i)} {exit_text(v.proc.popen.poll())} "
                                f"{time.monotonic() - v.started:.1f} s after it started: {why}")
                note(f"  {failures[-1]}")
        time.sleep(min(1.0, max(0.0, until - time.monotonic())))


def check_outputs(viewers: List[live_swarm.LiveViewer], rate: float, failures: List[str],
                  tag: str) -> None:
    """Viewer 0's file decodes without an error (ffprobe, every frame): a
    failure if not. Each file against the bytes_written of its viewer's last
    progress line is only noted: that line is up to ~1 s old at the stop,
    and the job counts bytes when it queues them for the file (queued bytes
    are dropped when the job is cancelled)."""
    slack = 2 * (rate or 1e6)
    off = []
    for i, v in enumerate(viewers):
        written = v.progress().get("bytes_written")
        size = v.output_bytes()
        if written is not None and abs(size - int(written)) > slack:
            off.append(f"{name_of(i)} {size - int(written):+d}")
    if off:
        note(f"  {tag}: files vs bytes_written beyond 2 s of stream (bytes): {', '.join(off)}")
    if viewers:
        ok, errors = live_swarm.ffprobe_ok(viewers[0].output_path, timeout=300)
        note(f"  {tag}: viewer00 output {viewers[0].output_bytes() / MB:.1f} MB, ffprobe "
             + ("decodes it without an error" if ok else f"errors: {'; '.join(errors[:3])}"))
        if not ok:
            failures.append(f"{tag}: viewer00's output does not decode cleanly: {errors[:3]}")


def viewer_line(i: int, p: Dict[str, Any], cpu: float) -> str:
    """One viewer's last progress, compact, for stderr."""
    def g(key: str, spec: str = "") -> str:
        v = p.get(key)
        return "-" if v is None else format(v, spec)
    def mb(key: str) -> str:
        return f"{(p.get(key) or 0) / MB:.1f}"
    return (f"{name_of(i)}: startup {g('startup_s')} s, lag p50/p95 {g('lag_p50_s')}/"
            f"{g('lag_p95_s')} s, pieces {g('pieces_written')} written {g('pieces_late')} late "
            f"{g('pieces_skipped')} skipped, peers {g('peers')}, MB from source/peers/up "
            f"{mb('bytes_from_source')}/{mb('bytes_from_peers')}/{mb('uploaded')}, "
            f"cpu {cpu:.1f} s")


def measure(b: live_swarm.LiveBroadcast, viewers: List[live_swarm.LiveViewer], t_last: float,
            u_last: float, cpu_last: List[float], res: Result, failures: List[str],
            tag: str) -> None:
    """Fills res from every process's last progress line, all still running."""
    window = time.monotonic() - t_last
    bp = b.progress()
    res.stream_rate = float(bp.get("stream_rate") or 0)
    res.uploaded = float(bp.get("uploaded") or 0)
    if res.stream_rate > 0 and window > 0:
        res.upload_multiple = (res.uploaded - u_last) / (res.stream_rate * window)
    cpu = [cpu_seconds(x.proc.pid) - c0 for x, c0 in zip([b, *viewers], cpu_last)]
    rss = [rss_mb(v.proc.pid) for v in viewers]
    me = own_cpu() - res.bench_cpu
    others = machine_busy() - res.machine_cpu - sum(cpu) - me
    res.cpu_line = (f"broadcaster {cpu[0] / window:.2f} cores, viewers "
                    f"{sum(cpu[1:]) / window / len(viewers):.3f} cores each "
                    f"({sum(cpu[1:]) / window:.2f} in all), this script {me / window:.2f}, "
                    f"the rest of the machine {max(0.0, others) / window:.2f} of "
                    f"{os.cpu_count()} cores, load {load()}")
    peer_counts, bans, viewers_up = [], 0, 0.0
    for i, v in enumerate(viewers):
        p = v.progress()
        if not p:
            failures.append(f"{tag}: {name_of(i)} printed no progress\n{v.output(tail=10)}")
            res.startup.append(None)
            continue
        s = p.get("startup_s")
        res.startup.append(float(s) if s is not None else None)
        if s is None:
            failures.append(f"{tag}: {name_of(i)} never played (state {p.get('state')!r}, "
                            f"{p.get('peers')} peers)")
        for key, into in (("lag_p50_s", res.lag50), ("lag_p95_s", res.lag95)):
            if p.get(key) is not None:
                into.append(float(p[key]))
        res.written += int(p.get("pieces_written") or 0)
        res.late += int(p.get("pieces_late") or 0)
        res.skipped += int(p.get("pieces_skipped") or 0)
        src, fromp = float(p.get("bytes_from_source") or 0), float(p.get("bytes_from_peers") or 0)
        res.from_source += src
        res.delivered += src + fromp
        peer_counts.append(int(p.get("peers") or 0))
        bans += int(p.get("bans") or 0)
        viewers_up += float(p.get("uploaded") or 0)
        note(f"    {viewer_line(i, p, cpu[i + 1])}")
    keys = ("pieces", "newest", "peers", "uploaded", "upload_rate", "stream_rate")
    note(f"  {tag}: broadcaster {json.dumps({k: bp.get(k) for k in keys})}, RSS "
         f"{rss_mb(b.proc.pid):.0f} MB")
    note(f"  {tag}: viewers' peers min/median/max {min(peer_counts, default=0)}/"
         f"{statistics.median(peer_counts) if peer_counts else 0:g}/"
         f"{max(peer_counts, default=0)}, bans {bans}, RSS median "
         f"{statistics.median(rss) if rss else 0:.0f} MB; bytes from source "
         f"{res.from_source / MB:.1f} MB vs broadcaster uploaded {res.uploaded / MB:.1f} MB; "
         f"from peers {(res.delivered - res.from_source) / MB:.1f} MB vs viewers uploaded "
         f"{viewers_up / MB:.1f} MB")
    if bans:
        failures.append(f"{tag}: {bans} bans in a swarm of honest peers")


def run_swarm(n: int, mode: str, source: Path, work: Path, failures: List[str]) -> Result:
    tag = f"N={n}, {mode}"
    res = Result(n, mode)
    d = work / f"{mode}-{n}"
    b = start_broadcaster(n, mode, source, d)
    viewers: List[live_swarm.LiveViewer] = []
    try:
        viewers = start_viewers(b, n, mode, d)
        t_last = time.monotonic()
        u_last = float(b.progress().get("uploaded") or 0)
        cpu_last = [cpu_seconds(x.proc.pid) for x in [b, *viewers]]
        res.bench_cpu, res.machine_cpu = own_cpu(), machine_busy()
        note(f"live bench: {tag}: {b.content_id}, {n} viewers joined in "
             f"{t_last - viewers[0].started:.1f} s; running {SECONDS:g} s, load {load()}")
        watch(b, viewers, t_last + SECONDS, failures, tag)
        measure(b, viewers, t_last, u_last, cpu_last, res, failures, tag)
    finally:
        live_swarm.stop_all([*viewers, b], grace=STOP_GRACE)
        for i, x in enumerate([b, *viewers]):
            rc = x.proc.popen.returncode
            name = name_of(i - 1)
            if rc != 0 and not any(f.startswith(f"{tag}: {name} ") for f in failures):
                failures.append(f"{tag}: {name} {exit_text(rc)} on SIGINT (want exit 0)")
                note(f"  {failures[-1]}")
    if os.environ.get("KEEP"):
        for x in [b, *viewers]:
            (x.workdir / "output.txt").write_text(x.output(tail=2000))
    try:
        check_outputs(viewers, res.stream_rate, failures, tag)
    finally:
        b.close()
        for v in viewers:
            v.close()
        if not os.environ.get("KEEP"):
            shutil.rmtree(d, ignore_errors=True)
    return res


def by_definition(n: int, stream_rate: float) -> Result:
    """The direct baseline where it cannot be measured: every byte from the
    broadcaster, N copies of the stream."""
    res = Result(n, "direct")
    res.measured = False
    res.upload_multiple = float(n)
    res.stream_rate = stream_rate
    return res


# --------------------------------------------------------------- figures ----

def med(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def ratio(value: Optional[float], goal: float) -> str:
    return f"{value / goal:.2f}" if value is not None else "n/a"


def fmt(value: Optional[float], spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def pct(value: Optional[float], spec: str) -> str:
    return fmt(None if value is None else value * 100, spec, " %")


def figure_lines(r: Result) -> List[str]:
    tag = f"N={r.n}" if r.mode == "openace" else f"N={r.n}, direct"
    if not r.measured:
        return [f"P2P offload ({tag}): 0 % by definition (every byte from the broadcaster)"]
    started = [s for s in r.startup if s is not None]
    never = len(r.startup) - len(started)
    s_med = med(started)
    s_max = (f"never ({never} of {len(r.startup)} viewers)" if never else
             fmt(max(started, default=None), ".2f", " s"))
    p95_med = med(r.lag95)
    cont = (r.written - r.late) / (r.written + r.skipped) if r.written + r.skipped else None
    offload = 1 - r.uploaded / r.delivered if r.delivered else None
    at = "" if r.n == OFFLOAD_GOAL_AT else f" at N={OFFLOAD_GOAL_AT} only"
    return [
        f"startup ({tag}): median {fmt(s_med, '.2f', ' s')}, max {s_max}, "
        f"goal < {GOAL_STARTUP_S:g} s, ratio {ratio(s_med, GOAL_STARTUP_S)}",
        f"live lag ({tag}): p50 median {fmt(med(r.lag50), '.2f', ' s')}, p95 median "
        f"{fmt(p95_med, '.2f', ' s')}, worst p95 {fmt(max(r.lag95, default=None), '.2f', ' s')}, "
        f"goal p95 < {GOAL_LAG_P95_S:g} s, ratio {ratio(p95_med, GOAL_LAG_P95_S)}",
        f"continuity ({tag}): {pct(cont, '.2f')} ({r.written} written, {r.late} late, "
        f"{r.skipped} skipped), goal >= {GOAL_CONTINUITY * 100:g} %, "
        f"ratio {ratio(cont, GOAL_CONTINUITY)}",
        f"P2P offload ({tag}): {pct(offload, '.1f')} (broadcaster {r.uploaded / MB:.1f} MB of "
        f"{r.delivered / MB:.1f} MB delivered), goal >= {GOAL_OFFLOAD * 100:g} %{at}, "
        f"ratio {ratio(offload, GOAL_OFFLOAD)}",
        f"cpu ({tag}): {r.cpu_line}",
    ]


def upload_line(n: int, oa: Optional[Result], direct: Optional[Result]) -> str:
    def show(r: Optional[Result]) -> str:
        if r is None or r.upload_multiple is None:
            return "n/a"
        return f"{r.upload_multiple:.1f}x bitrate" + ("" if r.measured else " by definition")
    rate = next((r.stream_rate for r in (oa, direct) if r and r.stream_rate), 0.0)
    value = "n/a"
    if oa and direct and oa.upload_multiple is not None and direct.upload_multiple:
        value = f"{oa.upload_multiple / direct.upload_multiple:.2f}"
    return (f"broadcaster upload (N={n}): openace {show(oa)}, direct {show(direct)}, "
            f"ratio {value} (stream {rate * 8 / 1e6:.2f} Mbit/s)")


# ------------------------------------------------------------------ main ----

def main() -> int:
    cli = peers.openace_cli()
    if not live_swarm.has_live_cli():
        note(f"live bench: {cli} is missing or has no `broadcast` subcommand yet "
             "(build it, or set OPENACE_CLI)")
        return 2
    for tool in ("ffmpeg", "ffprobe"):
        if not shutil.which(tool):
            note(f"live bench: {tool} is not installed")
            return 2
    # A SIGTERM (e.g. from timeout(1)) unwinds like an error, so the finally
    # blocks and the harness's atexit hook stop every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="openace-bench-live-"))
    lines: List[str] = []
    failures: List[str] = []
    started, load_start = time.monotonic(), load()

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    try:
        source = make_source()
        duration, bitrate = probe_media(source)
        modes = list(MODES)
        if "direct" in modes and not all(config_key_ok(k, v, work) for k, v in
                                         (("transport.pex", "false"), ("live.source_copies", "8"))):
            note("live bench: the CLI lacks transport.pex or live.source_copies: the direct "
                 "baseline is taken by definition, not measured")
            modes.remove("direct")
        note(f"live bench: {cli}; {source} ({duration:.1f} s, {bitrate / 1e6:.2f} Mbit/s, looped); "
             f"viewers {VIEWERS}, {SECONDS:g} s each, {JOIN_GAP:g} s apart; {os.cpu_count()} cpus, "
             f"load {load_start}")
        for n in VIEWERS:
            got: Dict[str, Result] = {}
            for mode in modes:
                try:
                    got[mode] = run_swarm(n, mode, source, work, failures)
                except (RunFailed, peers.HarnessError) as e:
                    failures.append(f"N={n}, {mode}: {e}")
                    note(f"live bench: N={n}, {mode}: FAILED: {e}")
                    continue
                for line in figure_lines(got[mode]):
                    emit(line)
            if "direct" in MODES and "direct" not in got:
                rate = got["openace"].stream_rate if "openace" in got else bitrate / 8
                got["direct"] = by_definition(n, rate)
                emit(figure_lines(got["direct"])[0])
            emit(upload_line(n, got.get("openace"), got.get("direct")))
    except RunFailed as e:
        note(f"live bench: {e}")
        return 1
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            note(f"live bench: kept {work}")

    print(f"\nsummary (1 broadcaster + {'/'.join(map(str, VIEWERS))} viewers, {bitrate / 1e6:.2f} "
          f"Mbit/s file looped in real time, loopback, {SECONDS:g} s after the last join; "
          f"{os.cpu_count()} cpus, load {load_start} at start, {load()} at end; "
          f"{time.monotonic() - started:.0f} s):")
    for line in lines:
        print(f"  {line}")
    if failures:
        note(f"live bench: {len(failures)} failure(s):")
        for f in failures:
            note(f"  - {f.splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
