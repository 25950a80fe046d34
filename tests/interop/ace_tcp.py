"""A small client of the Ace Stream engine's old TCP API (port 62062).

Written from shared/reference/acestream-api.md §3 and modelled on how
HTTPAceProxy talks to an engine, so that interop tests can drive
``openace serve`` the way that proxy (and Plexus, and the
acestream-orchestrator) do:

    HELLOBG version=4            -> HELLOTS version=… version_code=… key=<k> http_port=…
    READY key=<prefix>-<sha1>    -> AUTH 1
    LOADASYNC <id> INFOHASH …    -> LOADRESP <id> {"status":…,"files":[["name",idx],…],…}
    START INFOHASH <ih> <idx> 0 0 0 output_format=http
                                 -> START url=<playback url> [stream=1] …, STATE n,
                                    STATUS main:… every second, EVENT livepos (live)
    STOP                         -> STATE 0
    SHUTDOWN                     -> the engine closes the connection

Standard library only. Every wait takes a timeout and raises ``AceTcpError``
(with the lines seen so far) instead of hanging. Lines the caller is not
waiting for are kept: ``states``, ``statuses`` and ``events`` record every
STATE, STATUS and EVENT line in order.

The READY key is computed as every known client does:
``product_key.split('-')[0] + '-' + sha1(request_key + product_key)``. The
real engine checks it against Ace's product keys; OpenAce accepts any
well-formed key, so the default product key here is a made-up one.

Command line (prints what the engine answers)::

    python3 tests/interop/ace_tcp.py --port 62062 --infohash <40 hex> [--hls] [--seconds 5]
"""

import argparse
import hashlib
import json
import socket
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

DEFAULT_PRODUCT_KEY = "openacetest-0000-0000"

# STATE numbers (HTTPAceProxy AceConst.STATE).
STATE_NAMES = {
    0: "IDLE",
    1: "PREBUFFERING",
    2: "DOWNLOADING",
    3: "BUFFERING",
    4: "COMPLETED",
    5: "CHECKING",
    6: "ERROR",
}

# The ten fields of <common> in a STATUS line, in order.
COMMON_FIELDS = (
    "total_progress",
    "immediate_progress",
    "speed_down",
    "http_speed_down",
    "speed_up",
    "peers",
    "http_peers",
    "downloaded",
    "http_downloaded",
    "uploaded",
)


class AceTcpError(Exception):
    """A timeout, a closed connection or an error answer from the engine."""


def ready_key(request_key: str, product_key: str = DEFAULT_PRODUCT_KEY) -> str:
    """The READY key for the HELLOTS key= value."""
    digest = hashlib.sha1((request_key + product_key).encode("utf-8")).hexdigest()
    return product_key.split("-")[0] + "-" + digest


def parse_kv(words: List[str]) -> Dict[str, str]:
    """``["a=1", "b=x%20y", "plain"]`` -> ``{"a": "1", "b": "x y"}``."""
    out = {}
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            out[key] = unquote(value)
    return out


def parse_status(line: str) -> Dict[str, Any]:
    """``STATUS main:dl;<common>`` -> ``{"status": "dl", "peers": 5, …}``.

    prebuf/buf also give ``progress`` and ``time``, check gives
    ``progress``, wait gives ``time``; numbers are ints.
    """
    words = line.split()
    if len(words) < 2 or not words[1].startswith("main:"):
        raise AceTcpError("not a STATUS line: %r" % line)
    main = words[1][len("main:"):].split("|")[0]  # drop an |ad:… part
    parts = main.split(";")
    out: Dict[str, Any] = {"status": parts[0]}
    rest = parts[1:]
    if parts[0] in ("prebuf", "buf"):
        out["progress"], out["time"] = int(rest[0]), int(rest[1])
        rest = rest[2:]
    elif parts[0] == "check":
        out["progress"] = int(rest[0])
        rest = []
    elif parts[0] == "wait":
        out["time"] = int(rest[0])
        rest = rest[1:]
    elif parts[0] == "err":
        out["error"] = ";".join(rest)
        rest = []
    for name, value in zip(COMMON_FIELDS, rest):
        out[name] = int(value)
    return out


class AceTcpClient:
    """One connection to the TCP API. Use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 62062, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.closed = False
        self.lines: List[str] = []  # every line received, in order
        self.states: List[int] = []
        self.statuses: List[Dict[str, Any]] = []
        self.events: List[Tuple[str, Dict[str, str]]] = []
        self.hello: Dict[str, str] = {}

    def __enter__(self) -> "AceTcpClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------ transport

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def read_line(self, timeout: Optional[float] = None) -> str:
        """The next line; AceTcpError on timeout or when the engine closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AceTcpError("no line from the engine in time; seen: %r" % self.lines[-10:])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                self.closed = True
                raise AceTcpError("the engine closed the connection; seen: %r" % self.lines[-10:])
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        self.lines.append(line)
        self._record(line)
        return line

    def _record(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        if words[0] == "STATE" and len(words) > 1:
            self.states.append(int(words[1]))
        elif words[0] == "STATUS":
            self.statuses.append(parse_status(line))
        elif words[0] == "EVENT" and len(words) > 1:
            self.events.append((words[1], parse_kv(words[2:])))

    def expect(self, command: str, timeout: Optional[float] = None) -> str:
        """Reads lines until one starts with ``command`` (a word, or "##").

        An ``INFO 0;…`` on the way raises AceTcpError with its text.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            first = line.split(" ", 1)[0]
            if first == command or (command == "##" and line.startswith("##")):
                return line
            if line.startswith("INFO 0;") and command != "INFO":
                raise AceTcpError("engine error: %s" % line[len("INFO 0;"):])

    def closed_by_engine(self, timeout: float = 5.0) -> bool:
        """True once the engine has closed the connection (lines are kept)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.read_line(max(0.0, deadline - time.monotonic()))
        except AceTcpError:
            return self.closed
        return False

    # ------------------------------------------------------------- commands

    def handshake(self, product_key: str = DEFAULT_PRODUCT_KEY, version: int = 4) -> Dict[str, str]:
        """HELLOBG, READY key=…; returns the HELLOTS fields. Raises unless AUTH 1."""
        self.send("HELLOBG version=%d" % version)
        self.hello = parse_kv(self.expect("HELLOTS").split()[1:])
        key = self.hello.get("key")
        self.send("READY key=%s" % ready_key(key, product_key) if key else "READY")
        auth = self.expect("AUTH").split()
        if auth[1:] != ["1"]:
            raise AceTcpError("not authenticated: %s" % " ".join(auth))
        if int(self.hello.get("version_code", "0")) >= 3003600:
            self.send("SETOPTIONS use_stop_notifications=1")
        return self.hello

    def loadasync(self, kind: str, value: str, request_id: int = 1) -> Dict[str, Any]:
        """LOADASYNC <id> PID|INFOHASH|TORRENT|RAW <value> …; the LOADRESP json,
        file names URL-decoded. A failure is ``{"status": 100, "message": …}``."""
        tail = "" if kind == "PID" else " 0 0 0"
        self.send("LOADASYNC %d %s %s%s" % (request_id, kind, value, tail))
        prefix = "LOADRESP %d " % request_id
        while True:
            line = self.expect("LOADRESP")
            if line.startswith(prefix):
                break
        info = json.loads(line[len(prefix):])
        if "message" in info:
            info["message"] = unquote(info["message"])
        info["files"] = [[unquote(name), index] for name, index in info.get("files", [])]
        return info

    def start(self, kind: str, value: str, index: int = 0, output_format: str = "http",
              timeout: float = 30.0) -> Dict[str, str]:
        """START <kind> <value> <index> … output_format=…; the START fields
        (``url``, ``infohash``, ``stream`` for live, …). HTTPAceProxy waits 30 s."""
        if kind == "PID":
            args = "%s %d" % (value, index)
        elif kind == "TORRENT":
            args = "%s %d 0 0 0 0" % (value, index)
        else:
            args = "%s %d 0 0 0" % (value, index)
        self.send("START %s %s output_format=%s" % (kind, args, output_format))
        return parse_kv(self.expect("START", timeout).split()[1:])

    def status(self) -> Dict[str, Any]:
        """Asks for the current STATUS line."""
        self.send("STATUS")
        return parse_status(self.expect("STATUS"))

    def wait_status(self, want: str, timeout: float = 30.0) -> Dict[str, Any]:
        """Reads the periodic STATUS lines until one has status ``want``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.expect("STATUS", max(0.0, deadline - time.monotonic()))
            status = parse_status(line)
            if status["status"] == want:
                return status

    def liveseek(self, position: int, timeout: float = 5.0) -> Dict[str, str]:
        """LIVESEEK <unix ts>; the START fields the engine repeats after it."""
        self.send("LIVESEEK %d" % position)
        return parse_kv(self.expect("START", timeout).split()[1:])

    def stop(self) -> None:
        """STOP; waits for STATE 0."""
        self.send("STOP")
        while self.expect("STATE").split()[1:] != ["0"]:
            pass

    def shutdown(self) -> bool:
        """SHUTDOWN; True once the engine has closed the connection."""
        self.send("SHUTDOWN")
        return self.closed_by_engine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=62062)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--infohash")
    what.add_argument("--content-id")
    what.add_argument("--torrent-url")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--hls", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to print STATUS lines")
    args = ap.parse_args()
    if args.infohash:
        kind, value = "INFOHASH", args.infohash
    elif args.content_id:
        kind, value = "PID", args.content_id
    else:
        kind, value = "TORRENT", args.torrent_url
    with AceTcpClient(args.host, args.port) as ace:
        print("HELLOTS", ace.handshake())
        print("LOADRESP", ace.loadasync(kind, value))
        print("START", ace.start(kind, value, args.index, "hls" if args.hls else "http"))
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            try:
                print(ace.read_line(max(0.0, end - time.monotonic())))
            except AceTcpError:
                break
        ace.stop()
        print("closed after SHUTDOWN:", ace.shutdown())


if __name__ == "__main__":
    main()
