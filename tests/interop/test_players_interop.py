"""Real players and Ace Stream clients against the engine's HTTP API.

A live broadcast (`openace broadcast`, live_swarm.LiveBroadcast) and a
viewer engine (`openace serve` with the HTTP API on a free port, peered with
the broadcaster) are shared by the module. Players are the real programs
(players.py): ffprobe, ffmpeg, mpv, VLC (cvlc) and hls.js in headless
Chromium; Acexy's and python-acestream's flows are replayed request by
request as their code makes them (../shared/reference/acestream-api.md §2, §4).

    cd /work/main && OPENACE_CLI=$PWD/build-lead/openace \\
        /usr/bin/python3 -m pytest -q tests/interop/test_players_interop.py

What the tests prove:
- ffprobe finds the H.264 and AAC streams behind /ace/getstream?id= (302 to
  /ace/r/<id>/<key>), and ffmpeg decodes 3 s of it without an error;
- mpv plays 75 frames and VLC plays 4 s, both exiting normally after
  decoding video (mpv: frames shown, VO format; VLC: TS demux, decoders,
  first picture, 320x240);
- five players at once (3 ffmpeg, mpv, VLC), each with its own pid: one
  ffmpeg killed early, the other two keep decoding (frames and bytes grow),
  the stat of every survivor is "dl", mpv and VLC finish normally;
- Acexy's flow: format=json&pid=<uuid4> answers exactly the JSON types Acexy
  decodes, playback_url streams TS, stat has integer counters and string
  livepos values, command_url?method=stop answers "ok", ends the stream and
  the stat then says "unknown playback session id";
- python-acestream's flow: get_version, getstream?format=json&sid=sha1(id),
  stat polled every second until "dl" before any player reads (as
  acestream-launcher starts its player only then), then the stream;
- bad ids, missing parameters, unknown keys, a 64 KiB header or request
  line, a slowloris client and 100 garbage connections are each answered
  4xx or closed, while a reading ffmpeg keeps getting bytes and the engine
  answers get_version;
- hls.js plays /ace/manifest.m3u8?id= (a page of another origin, so CORS
  too) until currentTime advanced 3 s; the harness itself is proven
  against an HLS stream ffmpeg writes and python3 -m http.server serves.

Every test is bounded (an alarm fails one that runs past TEST_LIMIT). The
file takes about two minutes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import peers
import players
from live_swarm import AceEngine, LiveBroadcast, free_port
from peers import LOCALHOST, HarnessError

TEST_LIMIT = 75  # seconds, per test
FPS = 25         # live_swarm.LAVFI_SOURCE: testsrc2 at 25 fps, 320x240, sine at 48 kHz
SIZE = (320, 240)
TS_PACKET = 188
UNKNOWN_SESSION = "unknown playback session id"

live_cli = peers.requires("openace broadcast")
pytestmark = live_cli



# ------------------------------------------------------------- the engine ----


class Swarm:
    """The module's broadcast and viewer engine."""

    def __init__(self, broadcast: LiveBroadcast, engine: AceEngine) -> None:
        self.broadcast, self.engine = broadcast, engine
        self.cid: str = broadcast.content_id or ""

    def getstream(self, **params: Any) -> str:
        return self.engine.url("/ace/getstream", id=self.cid, **params)

    def stat_url(self, pid: str) -> str:
        return self.engine.url(f"/ace/stat/{self.cid}/{md5(pid)}")

    def describe(self) -> str:
        return f"engine:\n{self.engine.output(15)}\nbroadcaster:\n{self.broadcast.output(5)}"


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    root = tmp_path_factory.mktemp("players")
    with LiveBroadcast(workdir=root / "b") as b:
        b.wait_pieces(1, 20)
        with AceEngine([b.peer], workdir=root / "engine") as engine:
            yield Swarm(b, engine)
            assert engine.running(), f"the engine died during the tests\n{engine.output()}"


# ---------------------------------------------------------------- helpers ----

def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def get(url: str, timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers, body) of a GET that does not follow redirects."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(url: str, timeout: float = 10.0) -> Tuple[int, Any]:
    status, _, body = get(url, timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        raise AssertionError(f"GET {url}: {status}, not JSON: {body[:300]!r}") from None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class StreamReader(threading.Thread):
    """Reads an HTTP stream in the background (redirects followed), counting
    bytes; ``eof`` once the server ended it, ``error`` if it failed."""

    def __init__(self, url: str, keep: int = 1 << 20, timeout: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.url, self.keep, self.timeout = url, keep, timeout
        self.status: Optional[int] = None
        self.headers: Dict[str, str] = {}
        self.data = bytearray()
        self.bytes = 0
        self.eof = False
        self.error: Optional[str] = None
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        url = self.url
        try:
            for _ in range(5):
                parts = urllib.parse.urlsplit(url)
                conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                                  timeout=self.timeout)
                conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
                r = conn.getresponse()
                self.status = r.status
                self.headers = {k.lower(): v for k, v in r.getheaders()}
                if r.status in (301, 302, 303, 307) and "location" in self.headers:
                    url = urllib.parse.urljoin(url, self.headers["location"])
                    conn.close()
                    continue
                while not self._halt.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        self.eof = True
                        break
                    self.bytes += len(chunk)
                    if len(self.data) < self.keep:
                        self.data += chunk[:self.keep - len(self.data)]
                conn.close()
                return
        except Exception as e:  # noqa: BLE001 - reported through .error
            self.error = repr(e)

    def wait_bytes(self, count: int, timeout: float) -> None:
        """Waits for count bytes (or the end of the stream, or an error)."""
        peers.wait_until(lambda: self.bytes >= count or self.error or self.eof, timeout,
                         f"{count} bytes from {self.url}",
                         details=lambda: f"got {self.bytes}, status {self.status}, "
                         f"error {self.error}")

    def close(self) -> None:
        self._halt.set()
        self.join(self.timeout + 2)


def assert_ts(data: bytes) -> None:
    """MPEG-TS: a sync byte at the start of every 188-byte packet."""
    assert len(data) >= 10 * TS_PACKET, f"only {len(data)} bytes"
    bad = [i for i in range(0, len(data) - TS_PACKET + 1, TS_PACKET) if data[i] != 0x47]
    assert not bad, f"{len(bad)} packets without a sync byte, first at {bad[0]}"


def stat_of(url: str) -> Dict[str, Any]:
    status, body = get_json(url)
    assert status == 200 and isinstance(body, dict), (status, body)
    return body


def wait_stat(url: str, pred: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    seen: List[Any] = []

    def check() -> Any:
        body = stat_of(url)
        seen.append((body.get("response") or {}).get("status") if isinstance(
            body.get("response"), dict) else body)
        return body if pred(body) else None
    return peers.wait_until(check, timeout, what, interval=interval,
                            details=lambda: f"stat statuses seen: {seen[-10:]}")


def status_of(body: Dict[str, Any]) -> Optional[str]:
    resp = body.get("response")
    return resp.get("status") if isinstance(resp, dict) else None


# ------------------------------------------------------------------ tests ----

def test_ffprobe_and_ffmpeg_decode_getstream(swarm: Swarm) -> None:
    url = swarm.getstream()
    probe = players.ffprobe(url)
    print(f"ffprobe: {probe}")
    assert probe["rc"] == 0 and not probe["timed_out"], f"{probe}\n{swarm.describe()}"
    assert probe["format"] == "mpegts", probe
    video = [s for s in probe["streams"] if s["type"] == "video"]
    audio = [s for s in probe["streams"] if s["type"] == "audio"]
    assert video and video[0]["codec"] == "h264", probe
    assert (video[0]["width"], video[0]["height"]) == SIZE, probe
    assert audio and audio[0]["codec"] == "aac" and audio[0]["sample_rate"] == "48000", probe

    read = players.ffmpeg_read(url, 3.0, timeout=30)
    print(f"ffmpeg: {read}")
    assert read["rc"] == 0 and not read["timed_out"], read
    assert read["frames"] >= 3 * FPS - 5, read
    assert read["bytes"] > 50_000, read
    assert not read["errors"], read


def test_mpv_plays_getstream(swarm: Swarm) -> None:
    frames = 75
    r = players.mpv_play(swarm.getstream(), frames, timeout=30)
    print(f"mpv: {r}")
    assert r["rc"] == 0 and r["exit_reason"] == "End of file", r
    assert r["video"] and r["video"].startswith(f"h264 {SIZE[0]}x{SIZE[1]}"), r
    assert r["audio"] and r["audio"].startswith("aac"), r
    assert r["vo"] and r["vo"].startswith(f"{SIZE[0]}x{SIZE[1]}"), r
    # time-pos updates once per frame shown (a lower bound); --frames=N ends there
    assert r["frames"] >= frames - 5, r
    assert r["position"] is not None and r["position"] >= (frames - 5) / FPS, r
    assert r["decoder_dropped"] == 0, r


def test_vlc_plays_getstream(swarm: Swarm) -> None:
    r = players.vlc_play(swarm.getstream(), 4, timeout=30)
    print(f"vlc: {r}")
    assert r["rc"] == 0 and not r["timed_out"], r
    assert r["http_status"][:2] == [302, 200], r
    assert r["redirects"] and f"/ace/r/{swarm.cid}/" in r["redirects"][0], r
    assert "ts" in r["demux"], r
    assert r["video_decoder"] and r["audio_decoder"], r
    assert r["first_picture"] and r["video_size"] == f"{SIZE[0]}x{SIZE[1]}", r
    assert r["buffering_done"] and r["eof"], r  # played until --run-time ended it
    assert not r["errors"], r


def test_five_players_at_once_one_killed(swarm: Swarm) -> None:
    """3 ffmpeg, mpv and VLC on one stream, each with its own pid; one ffmpeg
    vanishes (SIGKILL) and the others play on."""
    pids = [f"player-{i}-{uuid.uuid4().hex[:8]}" for i in range(5)]
    runs: List[players.PlayerRun] = []
    try:
        ffs = [players.start_ffmpeg(swarm.getstream(pid=p)) for p in pids[:3]]
        runs += ffs
        mpv = players.start_mpv(swarm.getstream(pid=pids[3]), 12 * FPS)
        runs.append(mpv)
        vlc = players.start_vlc(swarm.getstream(pid=pids[4]), 12)
        runs.append(vlc)
        for f in ffs:
            peers.wait_until(lambda f=f: f.frames() >= FPS, 20, "each ffmpeg to decode 1 s",
                             details=lambda f=f: f"{f.facts()}\n{f.log()[-5:]}")
        victim, survivors = ffs[0], ffs[1:]
        victim.kill()
        at_kill = [(f.frames(), f.bytes()) for f in survivors]
        time.sleep(3)
        after = [(f.frames(), f.bytes()) for f in survivors]
        stats = {p: status_of(stat_of(swarm.stat_url(p))) for p in pids[1:]}
        mpv_r, vlc_r = mpv.result(30), vlc.result(30)
        for f in survivors:
            assert f.running(), f"a surviving ffmpeg exited: {f.facts()}"
        surv_facts = [f.facts() for f in survivors]
    finally:
        for r in runs:
            r.close()
    print(f"survivors at kill {at_kill}, 3 s later {after}\nstats {stats}\n"
          f"mpv {mpv_r}\nvlc {vlc_r}")
    for (f0, b0), (f1, b1) in zip(at_kill, after):
        assert f1 >= f0 + 2 * FPS and b1 > b0, f"a survivor stalled: {at_kill} -> {after}"
    assert all(s == "dl" for s in stats.values()), stats
    for facts in surv_facts:
        assert not facts["errors"], facts
    assert mpv_r["rc"] == 0 and mpv_r["exit_reason"] == "End of file", mpv_r
    assert mpv_r["frames"] >= 12 * FPS - 10, mpv_r
    assert vlc_r["rc"] == 0 and vlc_r["first_picture"] and vlc_r["eof"], vlc_r


def test_acexy_flow(swarm: Swarm) -> None:
    """As Javinator9889/acexy: format=json with a fresh uuid4 pid, the
    exact JSON types it decodes, the stream, stat, stop."""
    pid = str(uuid.uuid4())
    status, headers, body = get(swarm.engine.url("/ace/getstream", id=swarm.cid,
                                                 format="json", pid=pid))
    assert status == 200 and headers.get("content-type", "").startswith("application/json"), \
        (status, headers, body)
    doc = json.loads(body)
    assert set(doc) == {"response", "error"} and doc["error"] is None, doc
    resp = doc["response"]
    for key in ("playback_url", "stat_url", "command_url", "infohash", "playback_session_id"):
        assert isinstance(resp.get(key), str), (key, resp)
    for key in ("is_live", "is_encrypted", "client_session_id"):
        assert is_int(resp.get(key)), (key, resp)
    key = md5(pid)
    assert (resp["is_live"], resp["is_encrypted"], resp["client_session_id"]) == (1, 0, -1), resp
    assert resp["infohash"] == swarm.cid and resp["playback_session_id"] == key, resp
    for field, route in (("playback_url", "r"), ("stat_url", "stat"), ("command_url", "cmd")):
        assert resp[field] == f"{swarm.engine.base}/ace/{route}/{swarm.cid}/{key}", resp

    reader = StreamReader(resp["playback_url"])
    try:
        reader.wait_bytes(64 * 1024, 20)
        assert reader.status == 200, (reader.status, reader.error)
        assert reader.headers.get("content-type") == "video/mp2t", reader.headers
        assert_ts(bytes(reader.data))
        st = wait_stat(resp["stat_url"], lambda b: status_of(b) == "dl", 10, "stat dl")
        print(f"stat: {st}")
        s = st["response"]
        assert st["error"] is None and s["status"] == "dl", st
        for k in ("peers", "speed_down", "speed_up", "downloaded", "uploaded"):
            assert is_int(s.get(k)), (k, s)
        assert s["peers"] >= 1 and s["downloaded"] > 0, s
        livepos = s["livepos"]
        assert {"last", "live_first", "live_last", "pos", "first_ts", "last_ts", "is_live",
                "buffer_pieces"} <= set(livepos), livepos
        assert all(isinstance(v, str) and v.isdigit() for v in livepos.values()), livepos

        stop_status, stop = get_json(resp["command_url"] + "?method=stop")
        assert (stop_status, stop) == (200, {"response": "ok", "error": None}), stop
        peers.wait_until(lambda: reader.eof or reader.error, 5, "the stream to end after stop",
                         details=lambda: f"{reader.bytes} bytes, still open")
    finally:
        reader.close()
    _, after = get_json(resp["stat_url"])
    assert after == {"response": None, "error": UNKNOWN_SESSION}, after


def test_python_acestream_flow(swarm: Swarm) -> None:
    """As jonian/python-acestream (and acestream-launcher on top of it):
    get_version, getstream?format=json&sid=sha1(id), stat every 1 s until
    "dl" -- the launcher starts its player only then -- and the stream."""
    status, version = get_json(swarm.engine.url("/webui/api/service", format="json",
                                                method="get_version"))
    assert status == 200 and version.get("error") is None, version
    result = version.get("result") or version.get("response")
    assert isinstance(result, dict) and isinstance(result.get("version"), str) \
        and is_int(result.get("code")), version

    sid = hashlib.sha1(swarm.cid.encode()).hexdigest()
    status, doc = get_json(f"{swarm.engine.base}/ace/getstream?"
                           + urllib.parse.urlencode({"format": "json", "sid": sid,
                                                     "id": swarm.cid}))
    resp = doc.get("result") or doc.get("response")
    assert status == 200 and isinstance(resp, dict), doc
    assert resp["playback_session_id"] == md5(sid), resp

    # python-acestream polls `stat_url?` (its _geturl appends "?" and no params)
    seen: List[Any] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(1)
        _, st = get_json(resp["stat_url"] + "?")
        seen.append(status_of(st))
        if status_of(st) == "dl":
            break
    assert seen and seen[-1] == "dl", (
        f"stat never said 'dl' in 15 s of polling before a player read (statuses {seen}): "
        f"acestream-launcher, playstream.py and Horus start the player only on 'dl'")

    reader = StreamReader(resp["playback_url"])
    try:
        reader.wait_bytes(64 * 1024, 15)
        assert reader.status == 200 and not reader.error, (reader.status, reader.error)
        assert_ts(bytes(reader.data))
        _, stop = get_json(resp["command_url"] + "?" + urllib.parse.urlencode({"method": "stop"}))
        assert stop == {"response": "ok", "error": None}, stop
    finally:
        reader.close()


# ------------------------------------------------------ malformed requests ----

def raw_exchange(port: int, payload: bytes, timeout: float = 15.0,
                 half_close: bool = True) -> str:
    """Sends payload on a fresh connection and returns what became of it:
    "HTTP <code>" for a response, "closed" when the engine closed without
    one, "timeout" when nothing happened within timeout."""
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
        try:
            s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            return "closed"  # it closed while we were still sending
        return read_answer(s, timeout)


def read_answer(s: socket.socket, timeout: float) -> str:
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return "timeout" if not data else f"partial {data[:40]!r}"
    except OSError:
        return "closed"
    if not data:
        return "closed"
    parts = data.split(b"\r\n", 1)[0].split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
        return f"HTTP {int(parts[1])}"
    return f"garbage answer {data[:40]!r}"


def rejected(outcome: str) -> bool:
    """Closed, or a client error (505 is the answer to an HTTP/7.3 request)."""
    return outcome in ("closed", "HTTP 505") or outcome.startswith("HTTP 4")


def slowloris(port: int, path: str, result: Dict[str, Any], limit: float = 20.0) -> None:
    """Sends a request head one byte per second until the engine answers or
    closes (its header timeout), or limit seconds pass."""
    head = (f"GET {path} HTTP/1.1\r\nHost: {LOCALHOST}\r\nX-Slow: " + "s" * 64).encode()
    started = time.monotonic()
    with socket.create_connection((LOCALHOST, port), timeout=5) as s:
        s.settimeout(1.0)
        for i in range(len(head)):
            if time.monotonic() - started > limit:
                result.update(outcome="timeout", seconds=limit, sent=i)
                return
            try:
                s.sendall(head[i:i + 1])
            except OSError:
                result.update(outcome="closed", seconds=time.monotonic() - started, sent=i)
                return
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            outcome = "closed" if not data else read_answer_from(data)
            result.update(outcome=outcome, seconds=time.monotonic() - started, sent=i + 1)
            return
        result.update(outcome="timeout", seconds=time.monotonic() - started, sent=len(head))


def read_answer_from(data: bytes) -> str:
    parts = data.split(b"\r\n", 1)[0].split()
    if len(parts) >= 2 and parts[1].isdigit():
        return f"HTTP {int(parts[1])}"
    return f"garbage answer {data[:40]!r}"


def garbage_payloads(count: int, cid: str, seed: int = 20261126) -> List[bytes]:
    """count deterministic malformed requests: random bytes, broken request
    lines, bad headers, absurd lengths, bad ids on the playback routes."""
    rng = random.Random(seed)
    junk = lambda n: bytes(rng.randrange(256) for _ in range(n))  # noqa: E731
    text = lambda n, chars="abcXYZ019%/?&=.:;~ \t": "".join(  # noqa: E731
        rng.choice(chars) for _ in range(n))
    makers = [
        lambda: junk(rng.randrange(1, 2048)),
        lambda: junk(rng.randrange(1, 64)) + b"\r\n\r\n",
        lambda: f"G{text(6)} /ace/getstream?id={cid} HTTP/1.1\r\n\r\n".encode(),
        lambda: f"GET /ace/r/{cid}/{text(20)} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        lambda: f"GET /ace/getstream?id={text(40)} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        lambda: f"GET /ace/stat/{text(40)}/{text(32)} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        lambda: b"GET /ace/getstream HTTP/7.3\r\n\r\n",
        lambda: f"GET /ace/getstream?id={cid} HTTP/1.1\r\n{text(30, 'abc =;~')}\r\n\r\n".encode(),
        lambda: (f"POST /ace/getstream?id={cid} HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: {rng.randrange(10**9, 10**12)}\r\n\r\nab").encode(),
        lambda: (b"GET /ace/getstream?id=" + cid.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + junk(20)),
        lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + junk(100),  # a TLS hello
        lambda: b"GET /ace/r/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        lambda: b"GET /ace/getstream?id=" + b"%00" * 30 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def test_malformed_requests_while_a_player_reads(swarm: Swarm) -> None:
    engine, cid, port = swarm.engine, swarm.cid, swarm.engine.http_port
    pid = f"reader-{uuid.uuid4().hex[:8]}"
    reader = players.start_ffmpeg(swarm.getstream(pid=pid))
    slow: Dict[str, Any] = {}
    slow_thread = threading.Thread(target=slowloris, args=(port, f"/ace/stat/{cid}/x", slow),
                                   daemon=True)
    try:
        peers.wait_until(lambda: reader.bytes() > 0 or not reader.running(), 20,
                         "the reading ffmpeg's first bytes", details=lambda: str(reader.facts()))
        slow_thread.start()
        bytes_before = reader.bytes()
        bad_key = "0" * 32
        cases = {
            "bad id": engine.url("/ace/getstream", id="not-a-content-id"),
            "39 hex id": engine.url("/ace/getstream", id=cid[:39]),
            "41 hex id": engine.url("/ace/getstream", id=cid + "a"),
            "non-hex id": engine.url("/ace/getstream", id="g" * 40),
            "empty id": engine.url("/ace/getstream", id=""),
            "id not UTF-8": f"{engine.base}/ace/getstream?id=%ff%9a",
            "json, bad id": engine.url("/ace/getstream", id="zz", format="json"),
            "no source": engine.url("/ace/getstream"),
            "bad magnet": engine.url("/ace/getstream", magnet="magnet:?xt=urn:btih:xyz"),
            "stream, bad id": engine.url(f"/ace/r/nothex/{bad_key}"),
            "stream, unknown key": engine.url(f"/ace/r/{cid}/{bad_key}"),
            "stream, no key": engine.url(f"/ace/r/{cid}"),
            "stream, extra path": engine.url(f"/ace/r/{cid}/{bad_key}/x/y"),
            "stream, traversal": f"{engine.base}/ace/r/{cid}/..%2f..%2f..%2fetc%2fpasswd",
            "cmd, no method": engine.url(f"/ace/cmd/{cid}/{md5(pid)}"),
            "cmd, unknown method": engine.url(f"/ace/cmd/{cid}/{md5(pid)}", method="explode"),
        }
        answers: Dict[str, Tuple[int, bytes]] = {}
        for name, url in cases.items():
            status, _, body = get(url)
            answers[name] = (status, body[:200])
        stat_unknown = get_json(engine.url(f"/ace/stat/{cid}/{bad_key}"))
        cmd_unknown = get_json(engine.url(f"/ace/cmd/{cid}/{bad_key}", method="stop"))
        big_header = raw_exchange(port, (f"GET /ace/getstream?id={cid} HTTP/1.1\r\nHost: x\r\n"
                                         f"X-Big: {'b' * 65536}\r\n\r\n").encode())
        big_line = raw_exchange(port, (f"GET /ace/getstream?id={cid}&pad={'p' * 65536} "
                                       "HTTP/1.1\r\nHost: x\r\n\r\n").encode())
        many_headers = raw_exchange(port, (f"GET /ace/getstream?id={cid} HTTP/1.1\r\n"
                                           + "".join(f"X-H{i}: v\r\n" for i in range(500))
                                           + "\r\n").encode())
        outcomes: List[str] = [""] * 100

        def one(i: int, payload: bytes) -> None:
            try:
                outcomes[i] = raw_exchange(port, payload, timeout=15)
            except OSError as e:
                outcomes[i] = f"connect failed: {e!r}"
        threads = [threading.Thread(target=one, args=(i, p), daemon=True)
                   for i, p in enumerate(garbage_payloads(100, cid))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        slow_thread.join(25)
        bytes_mid = reader.bytes()
        time.sleep(1.5)
        bytes_after = reader.bytes()
        reader_stat = status_of(stat_of(swarm.stat_url(pid)))
        v_status, version = get_json(engine.url("/webui/api/service", method="get_version"))
        reader_facts = reader.facts()
    finally:
        reader.close()
    print(f"answers: {answers}\nstat, cmd unknown: {stat_unknown} {cmd_unknown}\n"
          f"64 KiB header: {big_header}, 64 KiB line: {big_line}, 500 headers: {many_headers}\n"
          f"slowloris: {slow}\n"
          f"garbage: {sorted(set(outcomes))}\nreader bytes {bytes_before} -> {bytes_mid} -> "
          f"{bytes_after}, stat {reader_stat}")
    bad = {k: v for k, v in answers.items() if not 400 <= v[0] < 500}
    assert not bad, f"not answered 4xx: {bad}"
    for unknown in (stat_unknown, cmd_unknown):  # Ace Stream's envelope, as Acexy reads it
        assert unknown[1] == {"response": None, "error": UNKNOWN_SESSION}, unknown
    for what, outcome in (("64 KiB header", big_header), ("64 KiB request line", big_line),
                          ("500 headers", many_headers)):
        assert rejected(outcome), f"{what}: {outcome}"
    assert slow.get("outcome") and rejected(slow["outcome"]), f"slowloris: {slow}"
    assert slow["seconds"] < 15, f"slowloris held a connection {slow['seconds']:.1f} s"
    odd = [(i, o) for i, o in enumerate(outcomes) if not rejected(o)]
    assert not odd, f"garbage connections not answered 4xx or closed: {odd[:10]}"
    assert bytes_mid > bytes_before and bytes_after > bytes_mid, \
        f"the reader stalled: {bytes_before} -> {bytes_mid} -> {bytes_after}\n{reader_facts}"
    assert reader_stat == "dl", reader_stat
    assert not reader_facts["errors"], reader_facts
    assert v_status == 200 and isinstance((version.get("result") or {}).get("version"), str), \
        version
    assert engine.running(), engine.output()


# ----------------------------------------------------------------- hls.js ----

class HlsOrigin:
    """ffmpeg -re writing a live HLS stream (1 s segments) into a directory
    that `python3 -m http.server` serves on a free port."""

    def __init__(self, workdir: Path) -> None:
        ffmpeg = players.need(players.FFMPEG, "ffmpeg")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.procs: List[subprocess.Popen] = []
        self.procs.append(subprocess.Popen(
            [ffmpeg, "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i",
             f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS}", "-f", "lavfi", "-i",
             "sine=frequency=440:sample_rate=48000", "-c:v", "libx264", "-preset", "veryfast",
             "-g", str(FPS), "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1",
             "-hls_list_size", "6", "-hls_flags", "delete_segments", "live.m3u8"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", LOCALHOST],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        self.url = f"http://{LOCALHOST}:{self.port}/live.m3u8"

    def wait_segments(self, count: int, timeout: float) -> None:
        def ready() -> bool:
            playlist = self.dir / "live.m3u8"
            if any(p.poll() is not None for p in self.procs):
                raise HarnessError("ffmpeg or http.server exited")
            return playlist.is_file() and playlist.read_text().count("#EXTINF") >= count
        peers.wait_until(ready, timeout, f"{count} HLS segments")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_hlsjs_harness_against_an_ffmpeg_hls_stream(tmp_path: Path) -> None:
    """hls_play.js itself: it plays an HLS stream of ffmpeg's and reports the
    advance; a page of another origin without CORS (http.server sends none)
    is a failure, reported with hls.js's fatal error and Chromium's reason."""
    players.need(players.NODE, "node")
    origin = HlsOrigin(tmp_path / "hls")
    try:
        origin.wait_segments(3, 20)
        good = players.hlsjs_play(origin.url, 3.0, timeout=30)
        no_cors = players.hlsjs_play(origin.url, 3.0, timeout=10, cross_origin=True)
    finally:
        origin.close()
    print(f"good: {good}\nno CORS: {no_cors}")
    assert good["ok"] and good["rc"] == 0, good
    assert good["advanced"] >= 3.0 and good["fragsLoaded"] >= 2 and not good["errors"], good
    assert not no_cors["ok"] and no_cors["rc"] == 1, no_cors
    assert any("manifestLoadError" in e for e in no_cors["errors"]), no_cors
    assert any("CORS" in c for c in no_cors.get("console", [])), no_cors


def test_hlsjs_plays_the_live_manifest(swarm: Swarm) -> None:
    """hls.js in Chromium, on a page of another origin, plays
    /ace/manifest.m3u8?id= (302 to /ace/m/<id>/<key>.m3u8, segments
    /ace/c/<id>/<n>.ts) until currentTime advanced 3 s."""
    players.need(players.NODE, "node")
    url = swarm.engine.url("/ace/manifest.m3u8", id=swarm.cid, pid=f"hlsjs-{uuid.uuid4()}")
    status, headers, body = get(url)
    assert status == 302 and f"/ace/m/{swarm.cid}/" in headers.get("location", ""), \
        f"GET /ace/manifest.m3u8 answered {status} {body[:200]!r}: no HLS route for live yet?"
    r = players.hlsjs_play(url, 3.0, timeout=45, cross_origin=True)
    print(f"hls.js: {r}")
    assert r["ok"] and r["rc"] == 0, f"{r}\n{swarm.describe()}"
    assert r["advanced"] >= 3.0 and not r["errors"], r
