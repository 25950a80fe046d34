#!/usr/bin/python3
"""BitTorrent transport benchmark: OpenAce against libtorrent on 127.0.0.1.

Run through bench/transport.sh (it finds or builds the CLI), or directly with
/usr/bin/python3, the interpreter python3-libtorrent is built for. One file
of deterministic bytes, one piece size, one libtorrent seeder in a process
of its own; the downloaders run one at a time against it, so each one's CPU
is its own. Prints one ratio line per figure as it is measured, then all of
them again as a summary:

  download rate:    `openace play -o FILE` vs `lt_peer.py download`, each
                    with only the seeder as peer: file size over the time
                    from the torrent added to the whole file verified, as
                    each times itself (openace: the `seconds` of its job's
                    `done` result; lt_peer.py: its `done` line), best of
                    RUNS. Process start-up is left out because Python's
                    (~0.5 s) is not libtorrent's; the rate from process
                    start is printed on stderr too.
  first byte:       openace's first_byte_s (job start to the first byte
                    written out) vs libtorrent with sequential download and
                    piece deadlines (torrent added to piece 0 verified), best
  cpu per GB:       user+sys CPU of the downloader process, start to exit,
                    per 10^9 bytes downloaded, best of RUNS; libtorrent's
                    less the CPU of starting lt_peer.py (interpreter, import)
  idle connections: VmRSS growth of a seeder process (`openace seed` vs a
                    libtorrent seeder) per connection it still holds, with
                    IDLE_CONNS peers that handshake and then stay idle
                    (bench/idle_peers.py); the engines' peer limits raised

Each run's output is verified against the seeded file in the first round.

MB = 10^6 bytes, GB = 10^9 bytes, KB = 1024 bytes (as /proc reports RSS).
Per-run details go to stderr. A slow machine never fails this script; exit 1
means a download failed or stalled, exit 2 that a tool is missing.

Environment: OPENACE_CLI (default build/openace), BENCH_SIZE_MB (256),
BENCH_PIECE_KB (256), BENCH_RUNS (3), BENCH_IDLE_CONNS (200),
BENCH_RUN_TIMEOUT (seconds per download, 120), BENCH_SOURCE (torrent: both
downloaders get the .torrent file; magnet: its magnet URI, so the info
dictionary comes from the seeder first), OPENACE_BENCH_CACHE (where the
test file is made once, /tmp/openace-bench), KEEP=1 keeps the work directory.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(HERE))
import idle_peers  # noqa: E402  (needs the paths above)
import peers  # noqa: E402

PYTHON = "/usr/bin/python3"
LT_PEER = REPO / "tests" / "interop" / "lt_peer.py"
MB = 1e6
GB = 1e9


def env_int(name: str, default: int, lo: int, hi: int) -> int:
    text = os.environ.get(name, "")
    try:
        value = int(text) if text else default
    except ValueError:
        value = -1
    if not lo <= value <= hi:
        sys.exit(f"transport bench: {name}={text!r} is not a whole number in [{lo}, {hi}]")
    return value


SIZE = env_int("BENCH_SIZE_MB", 256, 1, 65536) * (1 << 20)
PIECE = env_int("BENCH_PIECE_KB", 256, 16, 16384) * 1024
RUNS = env_int("BENCH_RUNS", 3, 1, 20)
IDLE_CONNS = env_int("BENCH_IDLE_CONNS", 200, 2, 20000)
RUN_TIMEOUT = env_int("BENCH_RUN_TIMEOUT", 120, 5, 3600)
SOURCE = os.environ.get("BENCH_SOURCE") or "torrent"
SETTLE_S = 1.5  # before each RSS reading: the seeder's reaction to new peers is over
if PIECE % 16384:
    sys.exit("transport bench: BENCH_PIECE_KB must be a multiple of 16 (libtorrent v1 torrents)")
if SOURCE not in ("torrent", "magnet"):
    sys.exit(f"transport bench: BENCH_SOURCE={SOURCE!r} is neither torrent nor magnet")


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def children_cpu() -> float:
    """user+sys seconds of every child reaped so far (the seeder is reaped
    only at the end, so a delta around one download is that download's)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise peers.HarnessError(f"no VmRSS for pid {pid}")


class Run:
    """One download. seconds: torrent added to the whole file verified, as
    the engine or lt_peer.py times it (process start-up left out: Python's
    is ~0.5 s); wall: from process start to the same point; first_byte:
    torrent added to the first byte out (None if unknown); cpu: user+sys
    seconds of the process, start to exit; problem: what went wrong after
    the file was complete and verified (e.g. a crash on exit), or ""."""

    def __init__(self, seconds: float, wall: float, first_byte: Optional[float],
                 cpu: float, extra: str = "", problem: str = "") -> None:
        self.seconds, self.wall, self.first_byte, self.cpu = seconds, wall, first_byte, cpu
        self.extra, self.problem = extra, problem

    def describe(self) -> str:
        fb = "-" if self.first_byte is None else f"{self.first_byte:.3f} s"
        return (f"{self.seconds:.3f} s in the engine ({SIZE / MB / self.seconds:.1f} MB/s), "
                f"{self.wall:.3f} s from process start ({SIZE / MB / self.wall:.1f} MB/s), "
                f"first byte {fb}, cpu {self.cpu:.2f} s{self.extra}")


class RunFailed(Exception):
    pass


def exit_text(rc: Optional[int]) -> str:
    return f"crashed (signal {-rc})" if rc is not None and rc < 0 else f"exited {rc}"


# ------------------------------------------------------------- downloads ----

def _final_event(line: str) -> Optional[Dict[str, Any]]:
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("final") else None


def _last_progress(play: peers.OpenacePlay) -> str:
    """The last progress object openace printed, trimmed, for stall reports."""
    for ev in reversed(play.events()):
        prog = (ev.get("data") or {}).get("progress")
        if isinstance(prog, dict):
            keep = ("state", "written", "size", "percent", "first_byte_s", "download_rate",
                    "downloaded", "peers", "pieces_have", "have", "buffer_bytes")
            return json.dumps({k: prog[k] for k in keep if k in prog})
    return "(no progress event)"


def run_openace(torrent: str, seeder: peers.Peer, work: Path, content: Path,
                verify: bool) -> Run:
    d = work / "openace"
    shutil.rmtree(d, ignore_errors=True)
    out = d / "out.bin"
    cpu0, t0 = children_cpu(), time.monotonic()
    play = peers.OpenacePlay(torrent, output=out, peers=[seeder], listen_port=0, workdir=d,
                             extra=["--log-level", "warn"])
    try:
        try:
            final = play.proc.wait_for(_final_event, RUN_TIMEOUT, "openace play's final event")
        except peers.HarnessError as e:
            rc = play.proc.popen.poll()
            how = "stalled" if isinstance(e, peers.HarnessTimeout) else exit_text(rc)
            size = out.stat().st_size if out.exists() else 0
            raise RunFailed(
                f"openace play {how}: {size} of {SIZE} bytes written after "
                f"{time.monotonic() - t0:.1f} s; last progress {_last_progress(play)}\n"
                f"{play.proc.output(tail=15)}") from None
        wall = time.monotonic() - t0
        rc = play.proc.wait(30)
        cpu = children_cpu() - cpu0
        data = final.get("data") or {}
        if data.get("state") != "done":
            raise RunFailed(f"openace play {exit_text(rc)}, state {data.get('state')!r}\n"
                            + play.proc.output(tail=15))
        result = data.get("result") or {}
        if not out.is_file() or out.stat().st_size != SIZE:
            raise RunFailed(f"openace play wrote {out.stat().st_size if out.exists() else 0} "
                            f"bytes, want {SIZE}")
        if verify and not filecmp.cmp(out, content, shallow=False):
            raise RunFailed("openace play's output differs from the seeded file")
        fb = result.get("first_byte_s")
        extra = (f", downloaded {result.get('downloaded', '?')} bytes, exit after "
                 f"{time.monotonic() - t0:.3f} s")
        # The bytes are all there: the run counts, but a bad exit is reported.
        problem = "" if rc == 0 else (f"openace play {exit_text(rc)} after its `done` event: "
                                      + " | ".join(play.proc.snapshot("stderr")[-3:]))
        return Run(float(result.get("seconds", wall)), wall,
                   float(fb) if fb is not None else None, cpu, extra, problem)
    finally:
        play.close()
        # Deleted at once, its dirty pages are dropped instead of being
        # written back to disk during the next run.
        shutil.rmtree(d, ignore_errors=True)


def run_libtorrent(torrent: str, seeder: peers.Peer, work: Path, content: Path,
                   sequential: bool, verify: bool) -> Run:
    d = work / "libtorrent"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    argv = [PYTHON, LT_PEER, "download", torrent, "--peer", f"{seeder[0]}:{seeder[1]}",
            "-o", d / "dl", "--timeout", RUN_TIMEOUT] + (["--sequential"] if sequential else [])
    cpu0, t0 = children_cpu(), time.monotonic()
    proc = peers.Proc([str(a) for a in argv], cwd=d)
    try:
        try:
            m = proc.wait_for(lambda l: re.fullmatch(r"done (\S+) first_byte (\S+)", l.strip()),
                              RUN_TIMEOUT + 15, "lt_peer's `done` line")
        except peers.HarnessError as e:
            raise RunFailed(f"libtorrent download failed: {e}") from None
        wall = time.monotonic() - t0
        rc = proc.wait(30)
        cpu = children_cpu() - cpu0
        if rc != 0:
            raise RunFailed(f"lt_peer download {exit_text(rc)}\n{proc.output(tail=15)}")
        got = d / "dl" / content.name
        if verify and not filecmp.cmp(got, content, shallow=False):
            raise RunFailed("libtorrent's download differs from the seeded file")
        fb = None if m.group(2) == "None" else float(m.group(2))
        return Run(float(m.group(1)), wall, fb, cpu, f", exit after {time.monotonic() - t0:.3f} s")
    finally:
        proc.stop()
        shutil.rmtree(d, ignore_errors=True)


def python_startup_cpu() -> float:
    """CPU seconds of starting lt_peer.py (interpreter, libtorrent import)
    without downloading: taken off libtorrent's figure, as it is Python's."""
    costs = []
    for _ in range(3):
        cpu0 = children_cpu()
        subprocess.run([PYTHON, str(LT_PEER), "download", "--help"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
        costs.append(children_cpu() - cpu0)
    return min(costs)


# ------------------------------------------------------------ the seeder ----

def test_file() -> Path:
    cache = Path(os.environ.get("OPENACE_BENCH_CACHE", "/tmp/openace-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    name = f"transport-{SIZE >> 20}MiB.bin"
    path = cache / name
    if not path.is_file() or path.stat().st_size != SIZE:
        note(f"transport bench: making the {SIZE >> 20} MiB test file once ({path})")
        tmp = Path(tempfile.mkdtemp(prefix="transport-file-", dir=cache))
        peers.make_files(tmp, {name: SIZE}, seed="openace-transport-bench")
        os.replace(tmp / name, path)
        shutil.rmtree(tmp, ignore_errors=True)
    with open(path, "rb") as f:  # into the page cache, so no run is the one that reads the disk
        while f.read(1 << 22):
            pass
    return path


def start_lt_seeder(content: Path, work: Path) -> Tuple[peers.Proc, peers.Peer, str]:
    """The seeder process, its address, and what the downloaders are given:
    the .torrent file's path, or with BENCH_SOURCE=magnet its magnet URI
    (then both fetch the info dictionary from the seeder first, BEP 9)."""
    torrent = work / "bench.torrent"
    proc = peers.Proc([PYTHON, str(LT_PEER), "seed", str(content), "--piece-size", str(PIECE),
                       "--torrent-out", str(torrent), "--start-timeout", "120"], cwd=work)
    magnet = proc.wait_for(lambda l: re.fullmatch(r"magnet (magnet:\S+)", l.strip()), 150,
                           "the libtorrent seeder's `magnet` line")
    m = proc.wait_for(lambda l: re.fullmatch(r"port (\d+)", l.strip()), 10,
                      "the libtorrent seeder's `port` line")
    proc.wait_for(lambda l: l.startswith("torrent "), 10, "the `torrent` line")
    source = magnet.group(1) if SOURCE == "magnet" else str(torrent)
    return proc, (peers.LOCALHOST, int(m.group(1))), source


# ----------------------------------------------------- idle connections ----

def idle_growth(pid: int, peer: peers.Peer, infohash: str, who: str) -> Tuple[float, str]:
    """KB of RSS per connection the seeder `pid` holds after IDLE_CONNS idle
    peers connected; and a line of details (counts, the second half's cost)."""
    time.sleep(SETTLE_S)
    before = rss_kb(pid)
    with idle_peers.IdlePeers(peer, infohash) as conns:
        half = IDLE_CONNS // 2
        conns.open(half)
        conns.drain(SETTLE_S)
        mid, held_mid = rss_kb(pid), conns.held()
        conns.open(IDLE_CONNS - half)
        conns.drain(SETTLE_S)
        after, held = rss_kb(pid), conns.held()
        conns.drain(3.0)  # do they survive a few idle seconds more?
        held_later = conns.held()
        refused = conns.refused
    if held == 0:
        raise RunFailed(f"{who} kept none of {IDLE_CONNS} idle connections: "
                        + "; ".join(refused[:3]))
    per = (after - before) / held
    second = (after - mid) / (held - held_mid) if held > held_mid else float("nan")
    detail = (f"{who}: RSS {before} KB -> {mid} KB ({held_mid} held) -> {after} KB ({held} held, "
              f"{held_later} still after 3 s more, {len(refused)} refused); second half "
              f"{second:.1f} KB each" + (f"; first refusal: {refused[0]}" if refused else ""))
    return per, detail


def idle_openace(small: Path, work: Path) -> Tuple[float, str]:
    sets = {"engine.max_peers": 10 * IDLE_CONNS, "transport.max_connections": 10 * IDLE_CONNS}
    with peers.OpenaceSeed(small, piece_length=PIECE, sets=sets, workdir=work / "idle-openace",
                           extra=["--log-level", "warn"]) as seed:
        assert seed.infohash is not None
        per, detail = idle_growth(seed.proc.pid, seed.peer, seed.infohash, "openace seed")
        if not seed.proc.running():
            raise RunFailed(f"openace seed died during the idle test\n{seed.proc.output()}")
        return per, detail


def idle_libtorrent(small: Path, work: Path) -> Tuple[float, str]:
    proc = peers.Proc([PYTHON, str(HERE / "idle_peers.py"), "lt-seed", str(small),
                       "--piece-size", str(PIECE), "--connections", str(10 * IDLE_CONNS)], cwd=work)
    with proc:
        ih = proc.wait_for(lambda l: re.fullmatch(r"infohash ([0-9a-f]{40})", l.strip()), 60,
                           "the libtorrent seeder's infohash")
        port = proc.wait_for(lambda l: re.fullmatch(r"port (\d+)", l.strip()), 10,
                             "the libtorrent seeder's port")
        return idle_growth(proc.pid, (peers.LOCALHOST, int(port.group(1))), ih.group(1),
                           "libtorrent seeder")


# ---------------------------------------------------------------- figures ----

def best(runs: List[Run], key: Callable[[Run], Optional[float]]) -> Optional[float]:
    values = [v for v in (key(r) for r in runs) if v is not None]
    return min(values) if values else None


def ratio_line(label: str, oa: Optional[float], lt: Optional[float], unit: str,
               fmt: str, tail: str) -> str:
    def show(v: Optional[float], who: str) -> str:
        return f"{who} {fmt.format(v)}{unit}" if v is not None else f"{who} failed"
    ratio = f"{oa / lt:.2f}" if oa is not None and lt else "n/a"
    return f"{label}: {show(oa, 'openace')}, {show(lt, 'libtorrent')}, ratio {ratio} ({tail})"


def rate(seconds: Optional[float]) -> Optional[float]:
    return SIZE / MB / seconds if seconds else None


def per_gb(cpu: Optional[float]) -> Optional[float]:
    return cpu / (SIZE / GB) if cpu is not None else None


def download_runs(content: Path, work: Path,
                  failures: List[str]) -> Tuple[List[Run], List[Run], List[Run]]:
    """RUNS rounds of openace, libtorrent and libtorrent sequential against
    one libtorrent seeder: (openace, libtorrent, libtorrent sequential) runs."""
    seeder_proc, seeder, source = start_lt_seeder(content, work)
    done: Tuple[List[Run], List[Run], List[Run]] = ([], [], [])
    with seeder_proc:
        # The seeder checks each piece's hash the first time it sends it
        # (seed mode): one untimed download pays for that.
        warm = run_libtorrent(source, seeder, work, content, False, True)
        note(f"  warm-up libtorrent: {warm.describe()}")
        for i in range(RUNS):
            kinds: List[Tuple[str, Callable[[], Run]]] = [
                ("openace", lambda: run_openace(source, seeder, work, content, i == 0)),
                ("libtorrent",
                 lambda: run_libtorrent(source, seeder, work, content, False, False)),
                ("libtorrent sequential",
                 lambda: run_libtorrent(source, seeder, work, content, True, i == 0))]
            for (name, go), runs in zip(kinds, done):
                try:
                    run = go()
                except (RunFailed, peers.HarnessError) as e:
                    failures.append(f"{name} run {i + 1}: {e}")
                    note(f"  {name} run {i + 1}: FAILED: {e}")
                    continue
                runs.append(run)
                note(f"  {name} run {i + 1}: {run.describe()}")
                if run.problem:
                    failures.append(f"{name} run {i + 1}: {run.problem}")
                    note(f"  {name} run {i + 1}: PROBLEM: {run.problem}")
                if not seeder_proc.running():
                    raise RunFailed(f"the libtorrent seeder died\n{seeder_proc.output()}")
    return done


def download_lines(oa: List[Run], lt: List[Run], seq: List[Run]) -> List[str]:
    oa_wall, lt_wall = rate(best(oa, lambda r: r.wall)), rate(best(lt, lambda r: r.wall))
    if oa_wall and lt_wall:
        note(f"  download rate from process start: openace {oa_wall:.1f} MB/s, libtorrent "
             f"{lt_wall:.1f} MB/s (Python start-up included), ratio {oa_wall / lt_wall:.2f}")
    py_cpu = python_startup_cpu()
    lt_cpu = best(lt, lambda r: r.cpu)
    return [
        ratio_line("download rate", rate(best(oa, lambda r: r.seconds)),
                   rate(best(lt, lambda r: r.seconds)), " MB/s", "{:.1f}",
                   "openace/libtorrent, higher is better, goal >= 1.5"),
        ratio_line("first byte", best(oa, lambda r: r.first_byte),
                   best(seq, lambda r: r.first_byte), " s", "{:.3f}",
                   "openace/libtorrent, lower is better, goal <= 0.5"),
        ratio_line("cpu per GB", per_gb(best(oa, lambda r: r.cpu)),
                   per_gb(lt_cpu - py_cpu if lt_cpu is not None else None), " s", "{:.2f}",
                   f"openace/libtorrent, lower is better; libtorrent's less {py_cpu:.2f} s "
                   "of Python start-up"),
    ]


def idle_line(work: Path, failures: List[str]) -> str:
    small = work / "idle" / "idle.bin"
    peers.make_files(small.parent, {small.name: 4 << 20}, seed="openace-idle-bench")
    per: Dict[str, Optional[float]] = {}
    for who, measure in (("openace", idle_openace), ("libtorrent", idle_libtorrent)):
        try:
            per[who], detail = measure(small, work)
            note(f"  {detail}")
        except (RunFailed, peers.HarnessError) as e:
            per[who] = None
            failures.append(f"idle connections, {who}: {e}")
            note(f"  idle connections, {who}: FAILED: {e}")
    return ratio_line("idle connections", per["openace"], per["libtorrent"], " KB each",
                      "{:.1f}", f"openace/libtorrent, {IDLE_CONNS} connections, "
                      "lower is better, goal < 16 KB")


def main() -> int:
    if not peers.HAVE_LIBTORRENT:
        note("transport bench: python3-libtorrent is not importable (run with /usr/bin/python3)")
        return 2
    cli = peers.openace_cli()
    if not (peers.openace_has("play") and peers.openace_has("seed")):
        note(f"transport bench: {cli} is missing or has no play/seed subcommands "
             "(build it, or set OPENACE_CLI)")
        return 2
    # A SIGTERM (e.g. from timeout(1)) unwinds like an error, so the atexit
    # hook of the harness stops every peer process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="openace-bench-transport-"))
    lines: List[str] = []
    failures: List[str] = []
    started = time.monotonic()
    load_start = load()

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    try:
        content = test_file()
        note(f"transport bench: {cli}; {SIZE >> 20} MiB, {PIECE >> 10} KiB pieces, "
             f"from a {SOURCE}, best of {RUNS}; load {load_start}")
        for line in download_lines(*download_runs(content, work, failures)):
            emit(line)
        emit(idle_line(work, failures))
    except (RunFailed, peers.HarnessError) as e:
        note(f"transport bench: {e}")
        return 1
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            note(f"transport bench: kept {work}")

    print(f"\nsummary ({SIZE >> 20} MiB file, {PIECE >> 10} KiB pieces, from a {SOURCE}, "
          f"loopback, best of {RUNS}; load {load_start} at start, {load()} at end; "
          f"{time.monotonic() - started:.0f} s):")
    for line in lines:
        print(f"  {line}")
    if failures:
        note(f"transport bench: {len(failures)} failure(s):")
        for f in failures:
            note(f"  - {f.splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
