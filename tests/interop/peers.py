"""Real BitTorrent software on 127.0.0.1, driven from pytest and scripts.

The interop tests check OpenAce against peers that no one here wrote:
libtorrent (python3-libtorrent, importable by /usr/bin/python3 only),
transmission-cli and opentracker. This module starts them, feeds them files
and watches them, with three rules:

- every wait takes a timeout and raises ``HarnessTimeout`` (with the
  program's recent output) instead of hanging;
- everything started is stopped again: use the classes as context managers
  (or call ``stop()``); an atexit hook kills what a crashed test left behind;
- everything listens on 127.0.0.1 only, on free ports, with DHT, LSD, PEX,
  UPnP and NAT-PMP off, so tests never reach beyond the machine.

Loopback tricks (learned the hard way, kept here in one place):

- libtorrent refuses a second connection from an IP it already talks to
  unless ``allow_multiple_connections_per_ip`` is on; every peer here is
  127.0.0.1, so it is on. uTP is off so that every peer speaks TCP.
- libtorrent 2.0 only makes v1-only torrents with ``create_torrent.v1_only``;
  then any multiple of 16 KiB is a valid piece size (48 KiB works). Without
  that flag it makes hybrid v1+v2 torrents, which need a power of two.
- transmission 3.00 never dials a 127.x (or ::1) peer: addresses from
  trackers, PEX and resume files are "martian" to it and silently dropped
  ("Got 2 peers from tracker", then nothing). It does accept incoming
  connections from 127.0.0.1, so the seeder dials it: ``connect_to``, or
  ``openace seed --peer``, or a forced re-announce (``LtSeeder.reannounce``,
  ignoring the tracker's min interval) once transmission has announced.
  It also sets interest only in its 10 s rechoke pulse, so a download takes
  10 s more than the bytes need. With ``ratio-limit`` 0 it stops the torrent
  as soon as it is complete and transmission-cli exits by itself (its
  stdout is block-buffered when piped: watch stderr and the exit instead).
  For 48 KiB pieces it requests 12 KiB blocks (largest power-of-two half of
  the piece size up to 16 KiB), and it never creates zero-length files.
- Debian's opentracker serves whitelisted infohashes only, chroots to
  ``tracker.rootdir`` and drops to ``tracker.user`` when started as root, and
  shares its port with others (SO_REUSEPORT), so a port clash is silent:
  ``Opentracker`` checks /proc/net/tcp for a second listener. SIGHUP makes it
  reread the whitelist.
"""

from __future__ import annotations

import atexit
import collections
import filecmp
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import (Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

try:
    import libtorrent as lt  # type: ignore
except ImportError:  # pragma: no cover - depends on the interpreter
    lt = None

HAVE_LIBTORRENT = lt is not None
REPO_ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"

TRANSMISSION_CLI = shutil.which("transmission-cli")
OPENTRACKER = shutil.which("opentracker") or (
    "/usr/bin/opentracker" if os.access("/usr/bin/opentracker", os.X_OK) else None)

PathLike = Union[str, Path]
Peer = Tuple[str, int]


class HarnessError(RuntimeError):
    """A helper failed; the message carries the program's recent output."""


class HarnessTimeout(HarnessError, TimeoutError):
    """A bounded wait ran out of time."""


# ---------------------------------------------------------------- files ----

def make_files(root: PathLike, spec: Mapping[str, int], seed: str = "openace") -> Dict[str, Path]:
    """Creates files under root with deterministic pseudo-random bytes.

    spec maps a relative path ("a/b.bin") to a size in bytes. The same
    (seed, path, size) always gives the same bytes. Returns relpath -> Path.
    """
    root = Path(root)
    out: Dict[str, Path] = {}
    for rel, size in spec.items():
        rel_path = Path(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or size < 0:
            raise ValueError(f"make_files: bad entry {rel!r}: {size}")
        path = root / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}/{rel}")
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                f.write(rng.randbytes(n))
                left -= n
        out[rel] = path
    return out


def tree_diff(a: PathLike, b: PathLike, limit: int = 10,
              missing_empty_ok: bool = False) -> List[str]:
    """Differences between two files or two directory trees, at most limit.

    An empty list means the same relative paths with the same bytes.
    missing_empty_ok: an empty file of a that b lacks is no difference
    (transmission 3.00 never creates zero-length files).
    """
    a, b = Path(a), Path(b)
    if a.is_file() or b.is_file():
        if not (a.is_file() and b.is_file()):
            return [f"{a} and {b} are not both files"]
        return [] if filecmp.cmp(a, b, shallow=False) else [f"{a} != {b}"]
    if not a.is_dir() or not b.is_dir():
        return [f"{a if not a.is_dir() else b} is missing"]

    def listing(root: Path) -> Dict[str, Path]:
        return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}

    la, lb = listing(a), listing(b)
    diffs = [f"only in {a}: {k}" for k in sorted(la.keys() - lb.keys())
             if not (missing_empty_ok and la[k].stat().st_size == 0)]
    diffs += [f"only in {b}: {k}" for k in sorted(lb.keys() - la.keys())]
    for k in sorted(la.keys() & lb.keys()):
        if len(diffs) >= limit:
            break
        if not filecmp.cmp(la[k], lb[k], shallow=False):
            sizes = f"{la[k].stat().st_size} vs {lb[k].stat().st_size} bytes"
            diffs.append(f"{k}: {sizes}, content differs")
    return diffs[:limit]


def same_tree(a: PathLike, b: PathLike) -> bool:
    """True when a and b (files or trees) hold the same paths and bytes."""
    return not tree_diff(a, b, limit=1)


# ------------------------------------------------------------- bencode ----

_MAX_DEPTH = 64


def bdecode(data: bytes) -> Any:
    """Decodes one bencoded value; raises ValueError on malformed input."""
    value, end = _bdecode_at(data, 0, 0)
    if end != len(data):
        raise ValueError(f"bdecode: {len(data) - end} trailing bytes")
    return value


def _bdecode_at(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("bdecode: nested too deep")
    if pos >= len(data):
        raise ValueError("bdecode: truncated")
    c = data[pos:pos + 1]
    if c == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if c in (b"l", b"d"):
        items: List[Any] = []
        pos += 1
        while data[pos:pos + 1] != b"e":
            item, pos = _bdecode_at(data, pos, depth + 1)
            items.append(item)
        if c == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise ValueError("bdecode: dict with a key and no value")
        return dict(zip(items[::2], items[1::2])), pos + 1
    if c.isdigit():
        colon = data.index(b":", pos)
        n = int(data[pos:colon])
        if n < 0 or colon + 1 + n > len(data):
            raise ValueError("bdecode: string runs past the end")
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise ValueError(f"bdecode: unexpected byte {c!r} at {pos}")


def bencode(value: Any) -> bytes:
    """Encodes int, bytes, str, list and dict (keys sorted) as bencode."""
    if isinstance(value, bool) or not isinstance(value, (int, bytes, str, list, tuple, dict)):
        raise TypeError(f"bencode: cannot encode {type(value).__name__}")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    keys = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in keys) + b"e"


def torrent_infohash(torrent: Union[bytes, PathLike]) -> str:
    """The v1 infohash (40 hex) of a .torrent, from its bytes or its path."""
    data = torrent if isinstance(torrent, bytes) else Path(torrent).read_bytes()
    meta = bdecode(data)
    if not isinstance(meta, dict) or b"info" not in meta:
        raise ValueError("torrent has no info dictionary")
    # Re-encoding is exact for the canonical (sorted) dictionaries real tools write.
    return hashlib.sha1(bencode(meta[b"info"])).hexdigest()


def torrent_with_trackers(torrent: bytes, trackers: Sequence[str]) -> bytes:
    """A copy of torrent whose only trackers are these (infohash unchanged)."""
    meta = bdecode(torrent)
    meta.pop(b"announce-list", None)
    if trackers:
        meta[b"announce"] = trackers[0].encode()
        meta[b"announce-list"] = [[t.encode()] for t in trackers]
    else:
        meta.pop(b"announce", None)
    return bencode(meta)


def make_torrent_v1(path: PathLike, piece_size: int, trackers: Sequence[str] = (),
                    creator: str = "openace interop harness") -> bytes:
    """A BEP 3 (v1) .torrent of a file or directory with any piece_size > 0,
    built here without libtorrent. Files are listed in sorted path order."""
    path = Path(path).resolve()
    if piece_size <= 0:
        raise ValueError(f"piece_size {piece_size} must be > 0")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise HarnessError(f"make_torrent_v1: no files under {path}")
    pieces, buf = [], b""
    for f in files:
        with open(f, "rb") as fh:
            while True:
                chunk = fh.read(piece_size - len(buf))
                if not chunk:
                    break
                buf += chunk
                if len(buf) == piece_size:
                    pieces.append(hashlib.sha1(buf).digest())
                    buf = b""
    if buf:
        pieces.append(hashlib.sha1(buf).digest())
    info: Dict[str, Any] = {"name": path.name, "piece length": piece_size,
                            "pieces": b"".join(pieces)}
    if path.is_file():
        info["length"] = path.stat().st_size
    else:
        info["files"] = [{"length": f.stat().st_size,
                          "path": list(f.relative_to(path).parts)} for f in files]
    meta: Dict[str, Any] = {"info": info, "created by": creator}
    if trackers:
        meta["announce"] = trackers[0]
        meta["announce-list"] = [[t] for t in trackers]
    return bencode(meta)


# ---------------------------------------------------------------- ports ----

def free_port(udp_too: bool = False) -> int:
    """A port of 127.0.0.1 that is free now (TCP, and UDP if udp_too)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((LOCALHOST, 0))
            port = t.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOCALHOST, port))
                except OSError:
                    continue
                return port
    raise HarnessError("free_port: no port free for both TCP and UDP in 50 tries")


def tcp_listeners(port: int) -> int:
    """How many sockets listen on TCP port (any address), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl local_address rem_address st ...; st 0A is LISTEN
            if len(fields) > 3 and fields[3] == "0A":
                count += int(fields[1].rsplit(":", 1)[1], 16) == port
    return count


def parse_peer(text: str) -> Peer:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise ValueError(f"not HOST:PORT: {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise ValueError(f"port out of range: {text!r}")
    return host, int(port)


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
               details: Callable[[], str] = lambda: "") -> Any:
    """Polls pred until it returns something truthy; HarnessTimeout after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = details()
            raise HarnessTimeout(f"timed out after {timeout:.1f} s waiting for {what}"
                                 + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def _workdir(workdir: Optional[PathLike], prefix: str) -> Tuple[Path, bool]:
    """(directory, owned): workdir, created if needed, or a new temporary
    directory that the caller owns and removes."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    return path, False


# ------------------------------------------------------------ processes ----

# Strong references: a Proc dropped without stop() is still killed at exit.
_live: "set[Proc]" = set()


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_live):
        p.stop(grace=1.0)


class Proc:
    """A child process whose stdout/stderr are collected by reader threads.

    stdout_file: write stdout raw to this file instead (binary media output).
    Lines are kept (last max_lines of each stream) for wait_for and errors.
    """

    def __init__(self, argv: Sequence[str], cwd: Optional[PathLike] = None,
                 env: Optional[Mapping[str, str]] = None, stdout_file: Optional[PathLike] = None,
                 max_lines: int = 2000) -> None:
        self.argv = [str(a) for a in argv]
        self.lines: Dict[str, Deque[str]] = {"stdout": collections.deque(maxlen=max_lines),
                                             "stderr": collections.deque(maxlen=max_lines)}
        self._cond = threading.Condition()
        self._out_fh = open(stdout_file, "wb") if stdout_file is not None else None
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=cwd, env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=self._out_fh if self._out_fh else subprocess.PIPE,
                stderr=subprocess.PIPE)
        except BaseException:
            if self._out_fh:
                self._out_fh.close()
            raise
        _live.add(self)
        self._threads = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                         for name, stream in (("stdout", self.popen.stdout),
                                              ("stderr", self.popen.stderr)) if stream]
        for t in self._threads:
            t.start()

    def _read(self, name: str, stream: Any) -> None:
        buf = b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            # transmission-cli redraws its progress line with \r: treat it as a line end.
            buf += chunk.replace(b"\r", b"\n")
            *done, buf = buf.split(b"\n")
            with self._cond:
                self.lines[name].extend(d.decode("utf-8", "replace") for d in done if d.strip())
                self._cond.notify_all()
        with self._cond:
            if buf.strip():
                self.lines[name].append(buf.decode("utf-8", "replace"))
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def snapshot(self, stream: str = "stdout") -> List[str]:
        """The lines of stream ("stdout" or "stderr") read so far."""
        with self._cond:
            return list(self.lines[stream])

    def output(self, tail: int = 40) -> str:
        """The last tail lines of stdout and stderr, for error messages."""
        with self._cond:
            out, err = list(self.lines["stdout"])[-tail:], list(self.lines["stderr"])[-tail:]
        return (f"$ {' '.join(self.argv)}\n[exit {self.popen.poll()}]\n--- stdout\n"
                + "\n".join(out) + "\n--- stderr\n" + "\n".join(err))

    def wait_for(self, pred: Callable[[str], Any], timeout: float, what: str,
                 stream: str = "stdout") -> Any:
        """First value pred(line) returns truthy for, over past and future lines."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                lines = list(self.lines[stream])
                for line in lines[seen:]:
                    hit = pred(line)
                    if hit:
                        return hit
                seen = len(lines)
                alive = self.popen.poll() is None or any(t.is_alive() for t in self._threads)
                left = deadline - time.monotonic()
                if not alive:
                    raise HarnessError(f"process exited while waiting for {what}\n{self.output()}")
                if left <= 0:
                    raise HarnessTimeout(f"timed out after {timeout:.1f} s waiting for {what}\n"
                                         + self.output())
                self._cond.wait(min(left, 0.2))

    def wait(self, timeout: float) -> int:
        """Waits for exit; returns the exit status. Kills it on timeout, then raises."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(grace=1.0)
            raise HarnessTimeout(f"still running after {timeout:.1f} s\n{self.output()}") from None
        self._join()
        return rc

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after grace seconds; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5.0)
        self._join()
        _live.discard(self)
        return self.popen.returncode

    def _join(self) -> None:
        for t in self._threads:
            t.join(2.0)
        if self._out_fh and not self._out_fh.closed:
            self._out_fh.close()
        for s in (self.popen.stdout, self.popen.stderr):
            if s and all(not t.is_alive() for t in self._threads):
                s.close()

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------- opentracker ----

class Opentracker:
    """A private opentracker on 127.0.0.1, TCP (HTTP) and UDP on one free port.

    Debian builds it whitelist-only: only infohashes given here (or to add())
    are tracked. Use as a context manager, or call start() and stop().
    """

    def __init__(self, whitelist: Iterable[str] = (), workdir: Optional[PathLike] = None,
                 binary: Optional[str] = None) -> None:
        self.binary = binary or OPENTRACKER
        if not self.binary:
            raise HarnessError("opentracker is not installed")
        self.dir, self._own_dir = _workdir(workdir, "opentracker-")
        self.whitelist: List[str] = []
        self.port = 0
        self.proc: Optional[Proc] = None
        for ih in whitelist:
            self._check_hash(ih)
            self.whitelist.append(ih.lower())

    @staticmethod
    def _check_hash(infohash: str) -> None:
        if not re.fullmatch(r"[0-9a-fA-F]{40}", infohash):
            raise ValueError(f"not a 40-hex v1 infohash: {infohash!r}")

    @property
    def http_announce(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/announce"

    @property
    def udp_announce(self) -> str:
        return f"udp://{LOCALHOST}:{self.port}/announce"

    def _write_whitelist(self) -> None:
        path = self.dir / "white.txt"
        path.write_text("".join(f"{ih}\n" for ih in self.whitelist))
        path.chmod(0o644)

    def start(self, timeout: float = 10.0) -> "Opentracker":
        # Started as root it chroots here and drops to "nobody", which must be
        # able to read the directory; the whitelist path is relative so that
        # it resolves both after a chroot and after a plain chdir (non-root).
        self.dir.chmod(0o755)
        self._write_whitelist()
        for _ in range(5):
            self.port = free_port(udp_too=True)
            conf = self.dir / "opentracker.conf"
            conf.write_text(f"listen.tcp_udp {LOCALHOST}:{self.port}\n"
                            f"tracker.rootdir {self.dir}\n"
                            "tracker.user nobody\n"
                            "access.whitelist white.txt\n")
            self.proc = Proc([self.binary, "-f", str(conf)], cwd=self.dir)
            try:
                wait_until(lambda: self._answers() or not self.proc.running(), timeout,
                           "opentracker to answer", details=self.proc.output)
            except HarnessTimeout:
                self.stop()
                raise
            if not self.proc.running():
                raise HarnessError(f"opentracker exited\n{self.proc.output()}")
            if tcp_listeners(self.port) == 1:
                return self
            self.proc.stop()  # someone else shares the port (SO_REUSEPORT): pick another
        raise HarnessError("opentracker: no port of its own after 5 tries")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{self.port}/stats", timeout=1) as r:
                r.read()
            return True
        except urllib.error.HTTPError:
            return True  # it answered (stats may be refused), so it is up
        except OSError:
            return False

    def announce(self, infohash: str, port: int, left: int = 0, event: str = "started",
                 timeout: float = 5.0) -> Dict[bytes, Any]:
        """An HTTP announce as peer 127.0.0.1:port; returns the decoded reply.

        Lets a test register a peer (e.g. an openace seeder) that does not
        announce itself. Raises HarnessError on a failure reason.
        """
        self._check_hash(infohash)
        peer_id = hashlib.sha1(f"harness{port}".encode()).digest()
        query = urllib.parse.urlencode({
            "info_hash": bytes.fromhex(infohash), "peer_id": peer_id, "port": port,
            "uploaded": 0, "downloaded": 0, "left": left, "event": event, "compact": 1})
        with urllib.request.urlopen(f"{self.http_announce}?{query}", timeout=timeout) as r:
            reply = bdecode(r.read())
        if b"failure reason" in reply:
            raise HarnessError(f"opentracker refused {infohash}: {reply[b'failure reason']!r}")
        return reply

    def peers(self, infohash: str) -> List[Peer]:
        """Peers the tracker lists for infohash. Asks as a throwaway peer
        (port 1) that leaves again at once, and leaves it out of the list."""
        reply = self.announce(infohash, port=1, left=1, event="started")
        self.announce(infohash, port=1, left=1, event="stopped")
        raw = reply.get(b"peers", b"")
        found = [(socket.inet_ntoa(raw[i:i + 4]), struct.unpack(">H", raw[i + 4:i + 6])[0])
                 for i in range(0, len(raw) - len(raw) % 6, 6)]
        return [p for p in found if p[1] != 1]

    def scrape(self, infohash: str, timeout: float = 5.0) -> Tuple[int, int]:
        """(seeders, leechers) the tracker counts for infohash."""
        self._check_hash(infohash)
        query = urllib.parse.urlencode({"info_hash": bytes.fromhex(infohash)})
        url = f"http://{LOCALHOST}:{self.port}/scrape?{query}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            entry = bdecode(r.read()).get(b"files", {}).get(bytes.fromhex(infohash), {})
        return entry.get(b"complete", 0), entry.get(b"incomplete", 0)

    def add(self, infohash: str, timeout: float = 5.0) -> None:
        """Whitelists infohash: before start() it is just recorded; while
        running, SIGHUP makes opentracker reread the list, and this returns
        once the tracker accepts the hash."""
        self._check_hash(infohash)
        if infohash.lower() not in self.whitelist:
            self.whitelist.append(infohash.lower())
        if self.proc is None:
            return
        self._write_whitelist()
        if not self.proc.running():
            raise HarnessError(f"opentracker is not running\n{self.proc.output()}")
        self.proc.popen.send_signal(signal.SIGHUP)

        def accepted() -> bool:
            try:  # a "stopped" announce is refused until whitelisted, and adds no peer
                self.announce(infohash, port=1, event="stopped")
                return True
            except HarnessError:
                return False
        wait_until(accepted, timeout, f"opentracker to accept {infohash}", interval=0.1,
                   details=self.proc.output)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(grace=2.0)
            self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Opentracker":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------- libtorrent ----

def _need_lt() -> None:
    if lt is None:
        raise HarnessError("libtorrent is not importable here: run with /usr/bin/python3 "
                           "and install python3-libtorrent")


def lt_session(port: int = 0, **extra: Any) -> Any:
    """A libtorrent session fit for loopback tests (see the module notes)."""
    _need_lt()
    cat = lt.alert.category_t
    settings = {
        "listen_interfaces": f"{LOCALHOST}:{port}",
        "listen_system_port_fallback": False,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "enable_incoming_tcp": True, "enable_outgoing_tcp": True,
        "allow_multiple_connections_per_ip": True,
        # On, it blocks loopback tracker URLs whose path is not /announce.
        "ssrf_mitigation": False,
        "announce_to_all_trackers": True, "announce_to_all_tiers": True,
        "download_rate_limit": 0, "upload_rate_limit": 0,
        "peer_connect_timeout": 3, "stop_tracker_timeout": 1,
        # Peers are dialled on the tick: 100 ms instead of 500 ms cuts the
        # time to first byte by ~0.4 s (matters for the streaming benchmark).
        "tick_interval": 100,
        "user_agent": "openace-interop-harness",
        "alert_mask": (cat.error_notification | cat.status_notification | cat.tracker_notification
                       | cat.storage_notification | cat.connect_notification
                       | cat.piece_progress_notification),
    }
    settings.update(extra)
    ses = lt.session(settings)
    ses.set_ip_filter(lt.ip_filter())
    return ses


def make_torrent(path: PathLike, piece_size: int = 32768, trackers: Sequence[str] = (),
                 creator: str = "openace interop harness") -> bytes:
    """A v1-only .torrent (bytes) of a file or directory.

    A multiple of 16 KiB is made by libtorrent's own creator (v1_only); it
    refuses other sizes, which make_torrent_v1 then builds instead (libtorrent
    and transmission both download such torrents: 20000 and 40000 checked).
    """
    if piece_size > 0 and piece_size % 16384:
        return make_torrent_v1(path, piece_size, trackers, creator)
    _need_lt()
    path = Path(path).resolve()
    if piece_size <= 0:
        raise ValueError(f"piece_size {piece_size} must be > 0")
    fs = lt.file_storage()
    lt.add_files(fs, str(path))
    if fs.num_files() == 0:
        raise HarnessError(f"make_torrent: no files under {path}")
    ct = lt.create_torrent(fs, piece_size, flags=lt.create_torrent.v1_only)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    ct.set_creator(creator)
    lt.set_piece_hashes(ct, str(path.parent))
    return lt.bencode(ct.generate())


class _LtTorrent:
    """Shared parts of LtSeeder and LtDownloader: a session, one torrent, alerts."""

    def __init__(self) -> None:
        self.ses: Any = None
        self.handle: Any = None
        self.log: Deque[str] = collections.deque(maxlen=300)
        self.tracker_replies: List[str] = []
        self.hash_failures = 0
        self.t0 = time.monotonic()

    def poll(self) -> None:
        """Drains libtorrent's alert queue into .log (the wait methods call it)."""
        if self.ses is None:
            return
        for a in self.ses.pop_alerts():
            self._on_alert(a)

    def _on_alert(self, a: Any) -> None:
        self.log.append(f"{time.monotonic() - self.t0:7.3f} {a.what()}: {a.message()}")
        if isinstance(a, lt.tracker_reply_alert):
            self.tracker_replies.append(a.tracker_url())
        elif isinstance(a, lt.hash_failed_alert):
            self.hash_failures += 1

    def details(self) -> str:
        self.poll()
        lines = list(self.log)[-40:]
        st = self.status()
        head = "" if st is None else (
            f"state={st.state} progress={st.progress:.3f} peers={st.num_peers} "
            f"seeds={st.num_seeds} error={st.errc.message() if st.errc.value() else '-'}\n")
        return head + "\n".join(lines)

    def status(self) -> Any:
        return self.handle.status() if self.handle is not None and self.handle.is_valid() else None

    @property
    def port(self) -> int:
        """The TCP port this session listens on (127.0.0.1)."""
        return self.ses.listen_port()

    def _check_error(self) -> None:
        st = self.status()
        if st is not None and st.errc.value():
            raise HarnessError(f"libtorrent torrent error: {st.errc.message()}\n{self.details()}")

    def stop(self) -> None:
        """Removes the torrent and shuts the session down (blocks ~1 s at most
        for tracker 'stopped' announces)."""
        if self.ses is not None:
            if self.handle is not None and self.handle.is_valid():
                self.ses.remove_torrent(self.handle)
            self.handle = None
            self.ses = None  # the session's destructor joins its threads

    def __del__(self) -> None:
        self.stop()


class LtSeeder(_LtTorrent):
    """Seeds a file or directory from a libtorrent session on 127.0.0.1.

    The torrent is v1-only with the chosen piece_size (any size > 0, see
    make_torrent), or the given torrent bytes. With start=False nothing listens
    yet: read .infohash (e.g. to whitelist it in a tracker), then start().
    Attributes: infohash (v1 hex), magnet, torrent_bytes, torrent_path, port.
    """

    def __init__(self, path: PathLike, piece_size: int = 32768, trackers: Sequence[str] = (),
                 port: int = 0, torrent: Optional[bytes] = None, start: bool = True,
                 workdir: Optional[PathLike] = None, timeout: float = 15.0) -> None:
        super().__init__()
        self.path = Path(path).resolve()
        self.trackers = list(trackers)
        self.torrent_bytes = torrent if torrent is not None else make_torrent(
            self.path, piece_size, self.trackers)
        self.info = lt.torrent_info(lt.bdecode(self.torrent_bytes))
        self.infohash = str(self.info.info_hashes().v1)
        self.magnet = lt.make_magnet_uri(self.info)
        self.workdir, self._own_dir = _workdir(workdir, "ltseed-")
        self.torrent_path = self.workdir / f"{self.info.name()}.torrent"
        self.torrent_path.write_bytes(self.torrent_bytes)
        self._listen_port = port
        if start:
            try:
                self.start(timeout)
            except BaseException:
                self.close()
                raise

    def start(self, timeout: float = 15.0, wait_announce: bool = True) -> "LtSeeder":
        """Starts seeding; waits until it seeds and, with trackers and
        wait_announce, until each tracker has answered one announce."""
        if self.ses is not None:
            return self
        self.ses = lt_session(self._listen_port)
        atp = lt.add_torrent_params()
        atp.ti = self.info
        atp.save_path = str(self.path.parent)
        # seed_mode: trust the files we just hashed; pieces are checked when first sent.
        atp.flags = (lt.torrent_flags.seed_mode | lt.torrent_flags.default_flags) & ~(
            lt.torrent_flags.auto_managed | lt.torrent_flags.paused
            | lt.torrent_flags.apply_ip_filter)
        self.handle = self.ses.add_torrent(atp)

        def ready() -> bool:
            self.poll()
            self._check_error()
            st = self.status()
            seeding = st is not None and st.is_seeding and self.port > 0
            if not (wait_announce and self.trackers):
                return seeding
            return seeding and set(self.trackers) <= set(self.tracker_replies)
        wait_until(ready, timeout, "the libtorrent seeder to seed", details=self.details)
        return self

    def connect_to(self, peer: Peer) -> None:
        """Dials peer (a leecher that will not dial us, e.g. transmission)."""
        self.handle.connect_peer((peer[0], int(peer[1])))

    def reannounce(self, timeout: float = 10.0) -> None:
        """Announces again now, ignoring the tracker's min interval, and waits
        for the replies (the seeder then dials the leechers listed)."""
        before = len(self.tracker_replies)
        self.handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        wait_until(lambda: self.poll() or len(self.tracker_replies) >= before + len(self.trackers),
                   timeout, "the re-announce replies", details=self.details)

    def __enter__(self) -> "LtSeeder":
        if self.ses is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class LtDownloader(_LtTorrent):
    """Downloads a magnet URI or .torrent (path or bytes) into save_dir.

    peers: (host, port) pairs to connect to directly (a magnet gets its
    metadata from them over BEP 9). trackers: extra announce URLs.
    sequential: download in order, with deadlines on the first pieces, as a
    streaming client would; first_byte_time() then measures time to play.
    """

    DEADLINE_PIECES = 4

    def __init__(self, save_dir: PathLike, source: Union[str, bytes, PathLike],
                 peers: Sequence[Peer] = (), trackers: Sequence[str] = (),
                 sequential: bool = False, port: int = 0) -> None:
        super().__init__()
        self.save_dir = Path(save_dir)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.sequential = sequential
        self._deadlines_set = False
        self._metadata_at: Optional[float] = None
        self._first_piece_at: Optional[float] = None
        self._complete_at: Optional[float] = None
        if isinstance(source, str) and source.startswith("magnet:"):
            atp = lt.parse_magnet_uri(source)
        else:
            atp = lt.add_torrent_params()
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            atp.ti = lt.torrent_info(lt.bdecode(data))
        atp.save_path = str(self.save_dir)
        atp.trackers = list(atp.trackers) + list(trackers)
        atp.peers = [(h, int(p)) for h, p in peers]
        flags = lt.torrent_flags.default_flags & ~(
            lt.torrent_flags.auto_managed | lt.torrent_flags.paused
            | lt.torrent_flags.apply_ip_filter)
        if sequential:
            flags |= lt.torrent_flags.sequential_download
        atp.flags = flags
        self.ses = lt_session(port)
        self.t0 = time.monotonic()
        try:
            self.handle = self.ses.add_torrent(atp)
        except BaseException:
            self.stop()
            raise

    def _on_alert(self, a: Any) -> None:
        super()._on_alert(a)
        now = time.monotonic() - self.t0
        if isinstance(a, lt.metadata_received_alert) and self._metadata_at is None:
            self._metadata_at = now
        elif isinstance(a, lt.piece_finished_alert) and a.piece_index == 0:
            if self._first_piece_at is None:
                self._first_piece_at = now
        elif isinstance(a, lt.torrent_finished_alert) and self._complete_at is None:
            self._complete_at = now

    def poll(self) -> None:
        super().poll()
        if self.sequential and not self._deadlines_set and self.handle is not None:
            ti = self.handle.torrent_file()
            if ti is not None:
                for i in range(min(self.DEADLINE_PIECES, ti.num_pieces())):
                    self.handle.set_piece_deadline(i, 100 * i)
                self._deadlines_set = True

    def progress(self) -> float:
        """Fraction of the wanted bytes verified, 0.0 .. 1.0."""
        self.poll()
        st = self.status()
        return 0.0 if st is None else float(st.progress)

    def wait_metadata(self, timeout: float = 30.0) -> Any:
        """Waits for the info dictionary (BEP 9 for magnets); returns torrent_info."""
        def got() -> Any:
            self.poll()
            self._check_error()
            st = self.status()
            return self.handle.torrent_file() if st is not None and st.has_metadata else None
        return wait_until(got, timeout, "metadata", details=self.details)

    def wait_complete(self, timeout: float = 60.0, expect: Optional[PathLike] = None) -> float:
        """Waits until every piece passed libtorrent's hash check; returns the
        seconds since the download began. With expect (the seeder's file or
        directory), also compares the downloaded bytes with it."""
        def done() -> bool:
            self.poll()
            self._check_error()
            st = self.status()
            return st is not None and st.has_metadata and st.is_seeding
        wait_until(done, timeout, "the libtorrent download to complete", details=self.details)
        if self._complete_at is None:
            self._complete_at = time.monotonic() - self.t0
        if expect is not None:
            diffs = tree_diff(expect, self.content_path())
            if diffs:
                raise HarnessError("downloaded bytes differ:\n" + "\n".join(diffs))
        return self._complete_at

    def content_path(self) -> Path:
        """save_dir/<torrent name>: the downloaded file or directory."""
        ti = self.handle.torrent_file()
        if ti is None:
            raise HarnessError("no metadata yet")
        return self.save_dir / ti.name()

    def metadata_time(self) -> Optional[float]:
        """Seconds from start to the metadata (None for a .torrent source or not yet)."""
        self.poll()
        return self._metadata_at

    def first_byte_time(self) -> Optional[float]:
        """Seconds from start until piece 0 was verified (None if not yet)."""
        self.poll()
        return self._first_piece_at

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> "LtDownloader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------- transmission ----

TRANSMISSION_SETTINGS: Dict[str, Any] = {
    "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
    "port-forwarding-enabled": False, "blocklist-enabled": False,
    "bind-address-ipv4": LOCALHOST, "bind-address-ipv6": "::1",
    "peer-port-random-on-start": False,
    "speed-limit-down-enabled": False, "speed-limit-up-enabled": False,
    "alt-speed-enabled": False,
    # ratio limit 0: the torrent stops once complete, and transmission-cli exits.
    "ratio-limit-enabled": True, "ratio-limit": 0,
    "idle-seeding-limit-enabled": False,
    "rename-partial-files": False, "incomplete-dir-enabled": False,
    "download-queue-enabled": False, "queue-stalled-enabled": False,
    # 2 (info) prints "Seed ratio reached"; TR_MSG_LEVEL=3 shows tracker traffic.
    "encryption": 1, "message-level": int(os.environ.get("TR_MSG_LEVEL", "2")),
    "cache-size-mb": 4,
}


class Transmission:
    """transmission-cli downloading one torrent into download_dir.

    It listens on 127.0.0.1:port (.peer) but never dials a 127.x peer: it
    treats loopback addresses from trackers (and PEX, resume files) as
    "martian" and drops them. So a seeder on loopback must connect to it:
    LtSeeder.connect_to(t.peer), `openace seed --peer` t.peer, or a
    tracker-brokered LtSeeder.reannounce() once transmission has announced.

    trackers: when not None, transmission gets a copy of the torrent whose
    only trackers are these (the infohash is unchanged; [] strips them).
    """

    def __init__(self, torrent: PathLike, download_dir: PathLike,
                 trackers: Optional[Sequence[str]] = None, port: Optional[int] = None,
                 workdir: Optional[PathLike] = None, listen_timeout: float = 10.0) -> None:
        if not TRANSMISSION_CLI:
            raise HarnessError("transmission-cli is not installed")
        self.download_dir = Path(download_dir)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self.workdir, self._own_dir = _workdir(workdir, "transmission-")
        data = Path(torrent).read_bytes()
        self.infohash = torrent_infohash(data)
        self.name = bdecode(data)[b"info"][b"name"].decode()
        if trackers is not None:
            data = torrent_with_trackers(data, trackers)
        torrent_file = self.workdir / "download.torrent"
        torrent_file.write_bytes(data)
        config = self.workdir / "config"
        config.mkdir(exist_ok=True)
        self.port = port if port is not None else free_port()
        settings = dict(TRANSMISSION_SETTINGS, **{"peer-port": self.port,
                                                  "download-dir": str(self.download_dir)})
        (config / "settings.json").write_text(json.dumps(settings, indent=1))
        self.t0 = time.monotonic()
        self.proc = Proc([TRANSMISSION_CLI, "-g", config, "-w", self.download_dir,
                          "-p", self.port, "-M", "-B", "-D", "-U", torrent_file], cwd=self.workdir)
        try:
            wait_until(lambda: tcp_listeners(self.port) > 0 or not self.proc.running(),
                       listen_timeout, f"transmission to listen on {self.port}",
                       details=self.proc.output)
            if not self.proc.running():
                raise HarnessError(f"transmission-cli exited at start\n{self.proc.output()}")
        except BaseException:
            self.close()
            raise

    @property
    def peer(self) -> Peer:
        return (LOCALHOST, self.port)

    def content_path(self) -> Path:
        return self.download_dir / self.name

    def _finished(self) -> bool:
        out = self.proc.output(tail=400)
        return "Seed ratio reached" in out or "Seeding" in out or "Progress: 100.0%" in out

    def wait_complete(self, timeout: float = 60.0, expect: Optional[PathLike] = None) -> float:
        """Waits until transmission has every piece (it hash-checks each one)
        and has exited; returns seconds since start. With expect, also
        compares the bytes (empty files excepted: transmission 3.00 never
        creates them). Raises HarnessTimeout/HarnessError with its output."""
        rc = self.proc.wait(timeout)
        elapsed = time.monotonic() - self.t0
        if rc != 0 or not self._finished():
            raise HarnessError(f"transmission-cli stopped before finishing\n{self.proc.output()}")
        if expect is not None:
            diffs = tree_diff(expect, self.content_path(), missing_empty_ok=True)
            if diffs:
                raise HarnessError("transmission's bytes differ:\n" + "\n".join(diffs))
        return elapsed

    def stop(self) -> None:
        self.proc.stop(grace=3.0)

    def close(self) -> None:
        if getattr(self, "proc", None) is not None:
            self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Transmission":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def transmission_download(torrent: PathLike, download_dir: PathLike,
                          invite: Optional[Callable[[Peer], Any]] = None,
                          timeout: float = 60.0, expect: Optional[PathLike] = None,
                          trackers: Optional[Sequence[str]] = None) -> Path:
    """Downloads torrent with transmission-cli; returns the content path.

    transmission will not dial loopback peers (see Transmission), so
    invite(peer) is called with its 127.0.0.1 address once it listens, for
    the seeder to connect to it (e.g. invite=seeder.connect_to). Returns once
    every piece passed its hash check; with expect, the bytes are compared.
    """
    deadline = time.monotonic() + timeout
    with Transmission(torrent, download_dir, trackers=trackers,
                      listen_timeout=min(10.0, timeout)) as tr:
        if invite is not None:
            invite(tr.peer)
        tr.wait_complete(max(0.1, deadline - time.monotonic()), expect=expect)
        return tr.content_path()


# -------------------------------------------------------------- openace ----

def openace_cli() -> Path:
    """The openace binary: $OPENACE_CLI, else build/openace in the repo."""
    env = os.environ.get("OPENACE_CLI")
    return Path(env) if env else REPO_ROOT / "build" / "openace"


def openace_has(subcommand: str, timeout: float = 10.0) -> bool:
    """True when the openace binary exists and its --help lists subcommand."""
    cli = openace_cli()
    if not os.access(cli, os.X_OK):
        return False
    try:
        r = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"^\s+{re.escape(subcommand)}\b", r.stdout + r.stderr, re.M) is not None


def run_openace(args: Sequence[Any], timeout: float = 60.0, check: bool = True,
                cwd: Optional[PathLike] = None) -> subprocess.CompletedProcess:
    """Runs openace ARGS to completion (text output captured).

    Kills it after timeout seconds and raises HarnessTimeout with its output;
    with check, a nonzero exit raises HarnessError with its output.
    """
    argv = [str(openace_cli())] + [str(a) for a in args]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # subprocess.run kills the child first
        raise HarnessTimeout(
            f"$ {' '.join(argv)}\nstill running after {timeout:.1f} s\n"
            f"--- stdout\n{_text(e.stdout)}\n--- stderr\n{_text(e.stderr)}") from None
    if check and r.returncode != 0:
        raise HarnessError(f"$ {' '.join(argv)}\n[exit {r.returncode}]\n--- stdout\n{r.stdout}"
                           f"\n--- stderr\n{r.stderr}")
    return r


def _text(b: Any) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def _peer_args(peers: Iterable[Peer]) -> List[str]:
    out: List[str] = []
    for host, port in peers:
        out += ["--peer", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return out


def _parse_json_lines(lines: Iterable[str]) -> List[Dict[str, Any]]:
    events = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                events.append(obj)
    return events


def _openace_argv(command: Sequence[Any], state_dir: Path, config: Optional[PathLike],
                  json_events: bool, peers: Iterable[Peer], listen_port: Optional[int],
                  sets: Optional[Mapping[str, Any]], extra: Sequence[Any]) -> List[Any]:
    """openace [global options] COMMAND...; global options may follow the
    subcommand (the CLI falls through), so they come after it here."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv: List[Any] = [openace_cli(), *command, "--state-dir", state_dir]
    if config is not None:
        argv += ["--config", config]
    if json_events:
        argv.append("--json")
    argv += _peer_args(peers)
    if listen_port is not None:
        argv += ["--listen-port", listen_port]
    for key, value in (sets or {}).items():
        argv += ["--set", f"{key}={value}"]
    return argv + list(extra)


class OpenacePlay:
    """`openace play SOURCE` in the background.

    output: a file path for -o (default: workdir/out.bin), or "-" for the
    media on stdout (then stdout goes raw to workdir/stdout.bin and
    .output_path points there). sets: {"transport.x": value} as --set flags.
    Each run gets its own --state-dir under workdir. Use wait(timeout) or stop().
    """

    def __init__(self, source: Any, output: Optional[PathLike] = None,
                 file_index: Optional[int] = None, peers: Sequence[Peer] = (),
                 listen_port: Optional[int] = None, config: Optional[PathLike] = None,
                 json_events: bool = True, sets: Optional[Mapping[str, Any]] = None,
                 extra: Sequence[Any] = (), workdir: Optional[PathLike] = None) -> None:
        self.workdir, self._own_dir = _workdir(workdir, "openace-play-")
        to_stdout = str(output) == "-"
        self.output_path = self.workdir / "stdout.bin" if to_stdout else Path(
            output if output is not None else self.workdir / "out.bin")
        command: List[Any] = ["play", source, "-o", "-" if to_stdout else self.output_path]
        if file_index is not None:
            command += ["--file-index", file_index]
        argv = _openace_argv(command, self.workdir / "state", config, json_events, peers,
                             listen_port, sets, extra)
        self.proc = Proc(argv, cwd=self.workdir,
                         stdout_file=self.output_path if to_stdout else None)

    def wait(self, timeout: float = 60.0, check: bool = True) -> int:
        """Waits for exit (kills and raises HarnessTimeout after timeout);
        with check, a nonzero exit raises HarnessError."""
        rc = self.proc.wait(timeout)
        if check and rc != 0:
            raise HarnessError(f"openace play failed\n{self.proc.output()}")
        return rc

    def events(self) -> List[Dict[str, Any]]:
        """JSON objects printed one per line (stdout unless it carried media, and stderr)."""
        return _parse_json_lines(self.proc.snapshot("stdout") + self.proc.snapshot("stderr"))

    def stop(self) -> Optional[int]:
        return self.proc.stop()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "OpenacePlay":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class OpenaceSeed:
    """`openace seed PATH` in the background, on a known port.

    listen_port defaults to a free port chosen here, so .peer is known even
    if the CLI prints no `port` line. peers: addresses it dials (e.g. a
    Transmission.peer, which will not dial a loopback seeder itself).
    wait_ready() reads the `infohash <hex>`, `magnet <uri>` (and `port <n>`)
    lines. Each run gets its own --state-dir under workdir.
    """

    def __init__(self, path: PathLike, trackers: Sequence[str] = (),
                 listen_port: Optional[int] = None, peers: Sequence[Peer] = (),
                 piece_length: Optional[int] = None, save_torrent: Optional[PathLike] = None,
                 config: Optional[PathLike] = None, sets: Optional[Mapping[str, Any]] = None,
                 extra: Sequence[Any] = (), workdir: Optional[PathLike] = None,
                 ready_timeout: Optional[float] = 30.0) -> None:
        self.workdir, self._own_dir = _workdir(workdir, "openace-seed-")
        self.port = listen_port if listen_port is not None else free_port()
        self.infohash: Optional[str] = None
        self.magnet: Optional[str] = None
        command: List[Any] = ["seed", Path(path)]
        for t in trackers:
            command += ["--tracker", t]
        if piece_length is not None:
            command += ["--piece-length", piece_length]
        if save_torrent is not None:
            command += ["--save", save_torrent]
        # Plain output: the ready lines are not printed with --json.
        argv = _openace_argv(command, self.workdir / "state", config, False, peers,
                             self.port, sets, extra)
        self.proc = Proc(argv, cwd=self.workdir)
        if ready_timeout is not None:
            try:
                self.wait_ready(ready_timeout)
            except BaseException:
                self.close()
                raise

    @property
    def peer(self) -> Peer:
        return (LOCALHOST, self.port)

    def wait_ready(self, timeout: float = 30.0) -> "OpenaceSeed":
        deadline = time.monotonic() + timeout
        m = self.proc.wait_for(lambda l: re.fullmatch(r"\s*infohash\s+([0-9a-fA-F]{40})\s*", l),
                               timeout, "the `infohash <hex>` line")
        self.infohash = m.group(1).lower()
        m = self.proc.wait_for(lambda l: re.fullmatch(r"\s*magnet\s+(magnet:\S+)\s*", l),
                               max(0.1, deadline - time.monotonic()), "the `magnet <uri>` line")
        self.magnet = m.group(1)
        # The `port` line comes in the same flush as the others, if at all.
        for line in self.proc.snapshot("stdout"):
            port = re.fullmatch(r"\s*port\s+(\d+)\s*", line)
            if port and int(port.group(1)) > 0:
                self.port = int(port.group(1))
        return self

    def stop(self) -> Optional[int]:
        return self.proc.stop()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "OpenaceSeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------ for pytest ----

def requires(*tools: str) -> Any:
    """pytest skip mark unless every tool is usable: "libtorrent",
    "transmission", "opentracker", or an openace subcommand ("openace play")."""
    import pytest
    missing = []
    for tool in tools:
        if tool == "libtorrent" and not HAVE_LIBTORRENT:
            missing.append("python3-libtorrent is not importable (use /usr/bin/python3)")
        elif tool == "transmission" and not TRANSMISSION_CLI:
            missing.append("transmission-cli is not installed")
        elif tool == "opentracker" and not OPENTRACKER:
            missing.append("opentracker is not installed")
        elif tool.startswith("openace ") and not openace_has(tool.split()[1]):
            missing.append(f"{openace_cli()} has no `{tool.split()[1]}` subcommand "
                           "(set OPENACE_CLI)")
    return pytest.mark.skipif(bool(missing), reason="; ".join(missing) or "all present")
