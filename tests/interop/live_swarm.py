"""`openace broadcast` and live `openace play` as processes, for swarm tests.

Each process gets its own --state-dir (a temporary directory unless one is
given), --listen-port 0 and --json; its JSON event lines are collected by
the reader threads of peers.Proc, and ``progress()`` is the latest progress
object of the job (broadcast: content_id, pieces, newest, peers, uploaded,
listen_port...; live play: state, pieces_written, pieces_skipped,
bytes_from_source, bytes_from_peers, bans, startup_s, position...). Every wait takes a
timeout and raises peers.HarnessTimeout with the process's recent output.
stop() sends SIGINT, then SIGKILL after a grace period; kill() is SIGKILL at
once (a viewer that vanishes). Use the classes as context managers.

The listen port of a process comes from a `port N` line, a progress field
(`listen_port` or `port`), the transport's "P2P port N" log line, or else
from /proc: the TCP sockets the process listens on, less the HTTP ones.

Media helpers: LAVFI_SOURCE (an endless test picture and tone, about
0.6 Mbit/s at 320x240), make_ts_file() (a looping MPEG-TS file with a chosen
keyframe interval) and ffprobe_ok() (demux and decode a TS file, collect
every error line).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (needs the path above)
from peers import (LOCALHOST, HarnessError, HarnessTimeout, PathLike, Peer, Proc,  # noqa: E402
                   _openace_argv, _parse_json_lines, _workdir, free_port, wait_until)

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")

# Endless lavfi video + audio (src/media/source.hpp: "lavfi:<graph>", one
# [outN] label per stream). libx264 veryfast at 320x240 and AAC: ~0.6 Mbit/s.
LAVFI_SOURCE = ("lavfi:testsrc2=size=320x240:rate=25[out0];"
                "sine=frequency=440:sample_rate=48000[out1]")

HEX40 = re.compile(r"[0-9a-f]{40}")


# ------------------------------------------------------------------ media ----

def ffprobe_ok(path: PathLike, timeout: float = 60.0) -> Tuple[bool, List[str]]:
    """Demuxes and decodes every frame of a TS file with `ffprobe -v error`.

    Returns (ok, errors): ok when ffprobe exits 0, prints no error line and
    finds at least one video frame; errors lists what went wrong.
    """
    if not FFPROBE:
        return False, ["ffprobe is not installed"]
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False, [f"{path} is missing or empty"]
    try:
        r = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "frame=media_type",
                            "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, [f"ffprobe ran over {timeout} s on {path}"]
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    if r.returncode != 0:
        errors.append(f"ffprobe exit {r.returncode}")
    kinds = [line.strip().strip(",") for line in r.stdout.splitlines()]
    if "video" not in kinds:
        errors.append(f"no video frame decoded from {path} ({path.stat().st_size} bytes)")
    return not errors, errors


def ts_frames(path: PathLike, timeout: float = 60.0) -> Dict[str, int]:
    """How many frames of each media type ffprobe decodes from path."""
    r = subprocess.run([str(FFPROBE), "-v", "quiet", "-show_entries", "frame=media_type",
                        "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                       timeout=timeout)
    counts: Dict[str, int] = {}
    for line in r.stdout.splitlines():
        kind = line.strip().strip(",")
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def make_ts_file(path: PathLike, seconds: float = 30.0, keyframe_s: float = 1.0,
                 size: str = "320x240", rate: int = 25, timeout: float = 60.0) -> Path:
    """An H.264 + AAC MPEG-TS test file with a keyframe every keyframe_s
    seconds exactly (a broadcaster stream-copies it, so its pieces are cut
    at these keyframes)."""
    if not FFMPEG:
        raise HarnessError("ffmpeg is not installed")
    gop = max(1, round(keyframe_s * rate))
    path = Path(path)
    argv = [FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", str(path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise HarnessError(f"ffmpeg could not make {path}: {r.stderr}")
    return path


def contains_any(path: PathLike, samples: Sequence[bytes]) -> List[bytes]:
    """The samples that occur somewhere in the file at path."""
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    return [s for s in samples if s and s in data]


# -------------------------------------------------------------- processes ----

def listening_ports(pid: int) -> Set[int]:
    """TCP ports the process pid listens on (from /proc)."""
    inodes: Set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    except OSError:
        return set()
    ports: Set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


class LiveProc:
    """One openace process running a live job with --json output."""

    kind = "openace"

    def __init__(self, command: Sequence[Any], workdir: Optional[PathLike], prefix: str,
                 state_dir: Optional[PathLike], listen_port: int, peers_: Sequence[Peer],
                 sets: Optional[Mapping[str, Any]], extra: Sequence[Any],
                 not_p2p_ports: Sequence[int] = ()) -> None:
        self.workdir, self._own_dir = _workdir(workdir, prefix)
        self.state_dir = Path(state_dir) if state_dir is not None else self.workdir / "state"
        self._not_p2p = set(not_p2p_ports)
        self._port: Optional[int] = listen_port or None
        self.argv = _openace_argv(command, self.state_dir, None, True, peers_, listen_port,
                                  sets, extra)
        # OPENACE_CLI may be relative to where pytest runs; the process runs in workdir.
        self.argv[0] = Path(self.argv[0]).resolve()
        self.started = time.monotonic()
        self.proc = Proc(self.argv, cwd=self.workdir)

    # -- events

    def events(self) -> List[Dict[str, Any]]:
        """Every JSON object printed so far (stdout, then stderr)."""
        return _parse_json_lines(self.proc.snapshot("stdout") + self.proc.snapshot("stderr"))

    def progress_history(self) -> List[Dict[str, Any]]:
        out = []
        for e in self.events():
            data = e.get("data")
            if isinstance(data, dict) and isinstance(data.get("progress"), dict):
                out.append(data["progress"])
        return out

    def progress(self) -> Dict[str, Any]:
        """The latest progress object ({} before the first one)."""
        lines = self.proc.snapshot("stderr") + self.proc.snapshot("stdout")
        for line in reversed(lines):
            if '"progress"' in line:
                for e in _parse_json_lines([line]):
                    data = e.get("data")
                    if isinstance(data, dict) and isinstance(data.get("progress"), dict):
                        return data["progress"]
        return {}

    def final_event(self) -> Optional[Dict[str, Any]]:
        for e in reversed(self.events()):
            if e.get("final"):
                return e
        return None

    def running(self) -> bool:
        return self.proc.running()

    def log_lines(self, pattern: str) -> List[str]:
        """stderr lines matching the regular expression (e.g. "banned peer")."""
        return [line for line in self.proc.snapshot("stderr") if re.search(pattern, line)]

    def output(self, tail: int = 30) -> str:
        return self.proc.output(tail)

    def wait_progress(self, pred: Callable[[Dict[str, Any]], Any], timeout: float,
                      what: str) -> Dict[str, Any]:
        """Waits until pred(latest progress) is truthy; returns that progress.
        Raises HarnessError at once if the process exits."""
        def check() -> Any:
            p = self.progress()
            if p and pred(p):
                return p
            if not self.running():
                raise HarnessError(f"{self.kind} exited while waiting for {what}\n{self.output()}")
            return None
        return wait_until(check, timeout, f"{self.kind}: {what}", interval=0.1,
                          details=lambda: f"latest progress: {self.progress()}\n{self.output()}")

    # -- port

    def _port_from_output(self) -> Optional[int]:
        for line in self.proc.snapshot("stdout"):
            m = re.fullmatch(r"\s*port\s+(\d+)\s*", line)
            if m and int(m.group(1)) > 0:
                return int(m.group(1))
        p = self.progress()
        for key in ("listen_port", "port"):
            if isinstance(p.get(key), int) and p[key] > 0:
                return p[key]
        for line in self.proc.snapshot("stderr"):  # the transport's log line
            m = re.search(r"\bP2P port ([1-9]\d*)\b", line)
            if m:
                return int(m.group(1))
        return None

    def _port_from_proc(self) -> Optional[int]:
        http = {int(m.group(1)) for line in self.proc.snapshot("stderr")
                for m in [re.search(r"listening on https?://[^\s]*:(\d+)", line)] if m}
        ports = listening_ports(self.proc.pid) - self._not_p2p - http
        return ports.pop() if len(ports) == 1 else None

    @property
    def port(self) -> int:
        """The P2P listen port (waits up to 15 s for it to be known)."""
        if self._port is None:
            self._port = wait_until(lambda: self._port_from_output() or self._port_from_proc(),
                                    15.0, f"the {self.kind}'s listen port",
                                    details=lambda: f"listening: "
                                    f"{sorted(listening_ports(self.proc.pid))}\n{self.output()}")
        return self._port

    @property
    def peer(self) -> Peer:
        return (LOCALHOST, self.port)

    # -- stopping

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """SIGINT, then SIGKILL after grace seconds; returns the exit status."""
        p = self.proc.popen
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
        return self.proc.stop(grace=2.0)

    def kill(self) -> Optional[int]:
        """SIGKILL at once (a peer that vanishes without goodbye)."""
        if self.proc.popen.poll() is None:
            self.proc.popen.kill()
        return self.proc.stop(grace=2.0)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LiveProc":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LiveBroadcast(LiveProc):
    """`openace broadcast SOURCE` with --json.

    embedded_tracker: also serve the engine's tracker on a free HTTP port
    (tracker_url), announced to by the broadcaster itself. state_dir: pass
    the same one to a second LiveBroadcast to restart the same broadcast
    (same key, same content id); listen_port likewise keeps its address.
    wait_ready() (called unless ready_timeout is None) waits for the
    content id.
    """

    kind = "broadcaster"

    def __init__(self, source: str = LAVFI_SOURCE, name: str = "interop live",
                 piece_duration: Optional[float] = None, state_dir: Optional[PathLike] = None,
                 workdir: Optional[PathLike] = None, listen_port: int = 0,
                 trackers: Sequence[str] = (), embedded_tracker: bool = False,
                 http_port: Optional[int] = None, peers_: Sequence[Peer] = (),
                 sets: Optional[Mapping[str, Any]] = None, loop: bool = False,
                 realtime: bool = True, save: Optional[PathLike] = None,
                 extra: Sequence[Any] = (), ready_timeout: Optional[float] = 30.0) -> None:
        all_sets = dict(sets or {})
        self.http_port: Optional[int] = None
        trackers = list(trackers)
        if embedded_tracker:
            self.http_port = http_port or free_port()
            all_sets.setdefault("transport.embedded_tracker", "true")
            all_sets.setdefault("engine.http_address", f"{LOCALHOST}:{self.http_port}")
            trackers.append(self.tracker_url)
        command: List[Any] = ["broadcast", source, "--name", name]
        if piece_duration is not None:
            command += ["--piece-duration", piece_duration]
        for t in trackers:
            command += ["--tracker", t]
        if loop:
            command.append("--loop")
        if not realtime:
            command.append("--no-realtime")
        if save is not None:
            command += ["--save", save]
        self.content_id: Optional[str] = None
        super().__init__(command, workdir, "openace-broadcast-", state_dir, listen_port, peers_,
                         all_sets, extra, [self.http_port] if self.http_port else [])
        if ready_timeout is not None:
            try:
                self.wait_ready(ready_timeout)
            except BaseException:
                self.close()
                raise

    @property
    def tracker_url(self) -> str:
        if self.http_port is None:
            raise HarnessError("this broadcaster runs no embedded tracker")
        return f"http://{LOCALHOST}:{self.http_port}/announce"

    @property
    def link(self) -> str:
        return f"acestream://{self.wait_ready().content_id}"

    def _cid(self) -> Optional[str]:
        for line in self.proc.snapshot("stdout"):
            m = re.fullmatch(r"\s*content_id\s+([0-9a-f]{40})\s*", line)
            if m:
                return m.group(1)
        cid = self.progress().get("content_id")
        return cid if isinstance(cid, str) and HEX40.fullmatch(cid) else None

    def wait_ready(self, timeout: float = 30.0) -> "LiveBroadcast":
        """Waits for the content id (a `content_id` line or a progress field)."""
        if self.content_id is None:
            def ready() -> Optional[str]:
                if not self.running():
                    raise HarnessError(f"broadcaster exited before it was ready\n{self.output()}")
                return self._cid()
            self.content_id = wait_until(ready, timeout, "the broadcast's content id",
                                         interval=0.1, details=self.output)
        return self

    def wait_pieces(self, count: int, timeout: float) -> Dict[str, Any]:
        """Waits until the broadcaster has signed at least count pieces."""
        return self.wait_progress(lambda p: (p.get("pieces") or 0) >= count, timeout,
                                  f"{count} signed pieces")


class LiveViewer(LiveProc):
    """`openace play <live link> -o FILE` with --json.

    source: a 40-hex content id (made an acestream:// link), a link, or a
    .acelive path. output: the media file (default workdir/out.ts).
    """

    kind = "viewer"

    def __init__(self, source: str, output: Optional[PathLike] = None,
                 peers_: Sequence[Peer] = (), trackers: Sequence[str] = (),
                 sets: Optional[Mapping[str, Any]] = None, listen_port: int = 0,
                 state_dir: Optional[PathLike] = None, workdir: Optional[PathLike] = None,
                 extra: Sequence[Any] = ()) -> None:
        if HEX40.fullmatch(source):
            source = f"acestream://{source}"
        self.source = source
        wd, _ = _workdir(workdir, "openace-view-")
        self.output_path = Path(output) if output is not None else wd / "out.ts"
        command: List[Any] = ["play", source, "-o", self.output_path]
        for t in trackers:
            command += ["--tracker", t]
        super().__init__(command, wd, "openace-view-", state_dir, listen_port, peers_, sets,
                         extra)
        self._own_dir = workdir is None

    def stat(self, key: str) -> int:
        """An integer progress field (0 when absent or null)."""
        v = self.progress().get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0

    def wait_playing(self, timeout: float, pieces: int = 1) -> Dict[str, Any]:
        """Waits until at least `pieces` verified pieces are written."""
        return self.wait_progress(lambda p: (p.get("pieces_written") or 0) >= pieces, timeout,
                                  f"{pieces} pieces written")

    def output_bytes(self) -> int:
        return self.output_path.stat().st_size if self.output_path.is_file() else 0


class AceEngine(LiveProc):
    """`openace serve --json` with the HTTP API and the TCP API on free ports
    of 127.0.0.1 (the viewer side of the Ace Stream API tests).

    Its first stdout line is {"event":"listening","http":"http://..."};
    ``base`` is that URL, ``tcp_port`` the TCP API's port. peers_: the
    --peer list; sets: more --set KEY=VALUE."""

    kind = "engine"

    def __init__(self, peers_: Sequence[Peer], workdir: Optional[PathLike] = None,
                 sets: Optional[Mapping[str, Any]] = None, timeout: float = 15.0) -> None:
        self.http_port, self.tcp_port = free_port(), free_port()
        all_sets = {"engine.http_address": f"{LOCALHOST}:{self.http_port}",
                    "engine.tcp_api_address": f"{LOCALHOST}:{self.tcp_port}", **(sets or {})}
        super().__init__(["serve"], workdir, "openace-serve-", None, 0, peers_, all_sets, [],
                         not_p2p_ports=[self.http_port, self.tcp_port])
        try:
            self.base: str = self.proc.wait_for(self._listening, timeout, "the listening event")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _listening(line: str) -> Optional[str]:
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if isinstance(event, dict) and event.get("event") == "listening":
            return str(event.get("http") or "").rstrip("/") or None
        return None

    def url(self, path: str, **params: Any) -> str:
        query = urllib.parse.urlencode(params)
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    def log(self) -> str:
        return f"\n--- engine log tail:\n{self.output(25)}"


def stop_all(procs: Sequence[Optional[LiveProc]], grace: float = 5.0) -> List[Optional[int]]:
    """Sends SIGINT to all first, then waits for each (faster than one by
    one); SIGKILL for any still running after grace. Returns the exit
    statuses (None for a None entry)."""
    live = [p for p in procs if p is not None and p.running()]
    for p in live:
        try:
            p.proc.popen.send_signal(signal.SIGINT)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.proc.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return [p.stop(grace=0.5) if p is not None else None for p in procs]


def has_live_cli() -> bool:
    """True when the openace binary has the `broadcast` subcommand."""
    return peers.openace_has("broadcast")


__all__ = ["LAVFI_SOURCE", "LiveBroadcast", "LiveViewer", "LiveProc", "ffprobe_ok", "ts_frames",
           "make_ts_file", "contains_any", "listening_ports", "stop_all", "has_live_cli",
           "HarnessError", "HarnessTimeout"]
