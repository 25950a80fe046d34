"""The Ace Stream API of `openace serve` for torrents, HLS and the TCP API.

A torrent seeded by libtorrent (peers.LtSeeder: an H.264/AAC MP4 that ffmpeg
made and a small .srt, 32 KiB pieces, a multi-file v1 torrent made by
peers.make_torrent_v1) and a live broadcast (live_swarm.LiveBroadcast) are
each watched through a viewer engine of their own (`openace serve --json`
with the HTTP API and the TCP API on free ports of 127.0.0.1, --peer the
seeder or the broadcaster). Everything here is what real clients do
(../shared/reference/acestream-api.md §2-§4; src/streamer/playback.hpp,
content_source.hpp, server_api.hpp, tcp_api.hpp):

    cd /work/main && OPENACE_CLI=$PWD/build-lead/openace \\
        /usr/bin/python3 -m pytest -q tests/interop/test_ace_api_interop.py

What the tests prove:
- /ace/getstream?infohash= answers 302 to /ace/r/<ih>/<key>, whose body is
  the seeded file byte for byte, video/mp4, with HTTP Range (a-b, a-, -n:
  206 and the right Content-Range and bytes; past the end: 416) and HEAD
  (Content-Length, no body); ffprobe finds H.264 + AAC, ffmpeg decodes the
  whole clip, mpv plays it; _idx=1 gives the .srt, an _idx past the files
  404 naming _idx; magnet=, data=<base64>, url=file:// and url=http://
  (a Python http.server) play the same torrent;
- /ace/manifest.m3u8?infohash= (VOD HLS): the playlist ends in
  #EXT-X-ENDLIST with segments /ace/c/<ih>/0/<n>.ts, ffmpeg decodes about
  the clip's duration from it and hls.js in Chromium advances currentTime;
- /ace/stat: "dl" while reading, integer counters, total_progress reaching
  100, is_live 0; /ace/cmd?method=stop answers ok, then the stat says
  "unknown playback session id";
- /server/api: get_api_access_token, get_status, get_network_connection_status,
  get_media_files (the torrent's files, index/filename/size), get_content_id
  (then content_id= plays the torrent), an unknown method 404 with
  {"code":0,"message":…};
- the TCP API as HTTPAceProxy drives it: HELLOBG/HELLOTS, READY with the
  key of reference §3 (AUTH 1; a malformed key AUTH 0), LOADASYNC,
  START … output_format=http|hls for the torrent and the broadcast (its
  START has stream=1, EVENT livepos lines follow), STATUS main:dl, STOP,
  SHUTDOWN; ffprobe/ffmpeg read each START url;
- /hls/manifest.m3u8?manifest_url= of an HLS stream ffmpeg writes live
  (served by a Python http.server): 302 to /ace/m/<cid>/<key>.m3u8, the json
  envelope with is_live 1, ffmpeg decodes 3 s of it;
- liveseek to livepos.live_first re-sends older pieces at once (the bytes the
  reader got first arrive again within a second); a pos outside the window
  400 naming pos.

Every test is bounded (an alarm fails one that runs past TEST_LIMIT); every
failure message names what was expected, what came, and the engine's log.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import http.server
import json
import random
import re
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import peers
import players
from ace_tcp import AceTcpClient, parse_kv
from live_swarm import FFMPEG, AceEngine, LiveBroadcast
from peers import LOCALHOST

TEST_LIMIT = 90       # seconds, per test
CLIP_SECONDS = 20
FPS = 25
PIECE = 32 * 1024
UNKNOWN_SESSION = "unknown playback session id"
HEX40 = re.compile(r"[0-9a-f]{40}")
KEY = r"[0-9a-f]{32}"

pytestmark = [peers.requires("openace serve"),
              pytest.mark.skipif(not FFMPEG, reason="ffmpeg is not installed")]
need_lt = peers.requires("libtorrent")
need_live = peers.requires("openace broadcast")



# ------------------------------------------------------------- the engine ----


class FileServer:
    """A directory served over HTTP by http.server in a thread (127.0.0.1, free port)."""

    def __init__(self, root: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass
        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer((LOCALHOST, 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://{LOCALHOST}:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class TorrentEnv:
    """The module's seeded torrent and the engine that plays it."""

    def __init__(self, root: Path, seeder: peers.LtSeeder, engine: AceEngine,
                 files: Dict[str, bytes], torrent: bytes) -> None:
        self.root, self.seeder, self.engine = root, seeder, engine
        self.files = files            # name in the torrent -> bytes, in index order
        self.torrent = torrent
        self.ih = seeder.infohash
        self.name = root.name
        self.clip = files["clip.mp4"]

    def describe(self) -> str:
        return self.engine.log()


class LiveEnv:
    """The module's broadcast and the engine that watches it."""

    def __init__(self, broadcast: LiveBroadcast, engine: AceEngine) -> None:
        self.broadcast, self.engine = broadcast, engine
        self.cid: str = broadcast.content_id or ""

    def describe(self) -> str:
        return f"{self.engine.log()}\n--- broadcaster:\n{self.broadcast.output(5)}"


def make_clip(path: Path, seconds: int = CLIP_SECONDS) -> Path:
    """An H.264 + AAC MP4 (moov first), 320x240 at FPS, keyframe every second."""
    argv = [FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-g", str(FPS), "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise peers.HarnessError(f"ffmpeg could not make {path}: {r.stderr}")
    return path


def make_srt(path: Path, lines: int = 600) -> Path:
    rng = random.Random(7)
    cues = []
    for i in range(lines):
        words = " ".join(rng.choice(["ace", "stream", "torrent", "piece", "peer", "seed"])
                         for _ in range(8))
        cues.append(f"{i + 1}\n00:00:{i % 60:02},000 --> 00:00:{i % 60:02},500\n{words}\n")
    path.write_text("\n".join(cues))
    return path


@pytest.fixture(scope="module")
def tenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorrentEnv]:
    if not peers.HAVE_LIBTORRENT:
        pytest.skip("python3-libtorrent is not importable (use /usr/bin/python3)")
    base = tmp_path_factory.mktemp("aceapi")
    root = base / "acetest"
    root.mkdir()
    make_clip(root / "clip.mp4")
    make_srt(root / "extra.srt")
    # make_torrent_v1 lists files in sorted path order: clip.mp4 is 0, extra.srt 1.
    files = {name: (root / name).read_bytes() for name in ("clip.mp4", "extra.srt")}
    torrent = peers.make_torrent_v1(root, PIECE)
    seeder = peers.LtSeeder(root, torrent=torrent, workdir=base / "seeder")
    try:
        with AceEngine([(LOCALHOST, seeder.port)], base / "engine") as engine:
            yield TorrentEnv(root, seeder, engine, files, torrent)
            assert engine.running(), f"the engine died during the tests{engine.log()}"
    finally:
        seeder.close()


@pytest.fixture(scope="module")
def lenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEnv]:
    if not peers.openace_has("broadcast"):
        pytest.skip("the openace binary has no `broadcast` subcommand")
    base = tmp_path_factory.mktemp("aceapi-live")
    with LiveBroadcast(workdir=base / "b") as b:
        b.wait_pieces(1, 20)
        with AceEngine([b.peer], base / "engine") as engine:
            yield LiveEnv(b, engine)
            assert engine.running(), f"the engine died during the tests{engine.log()}"


# ---------------------------------------------------------------- helpers ----

def request(method: str, url: str, headers: Optional[Dict[str, str]] = None,
            timeout: float = 30.0) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers with lower-case names, body); redirects are not followed."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(url: str, timeout: float = 30.0) -> Tuple[int, Any]:
    status, _, body = request("GET", url, timeout=timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        raise AssertionError(f"GET {url}: {status}, expected JSON, got {body[:300]!r}") from None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def redirect(engine: AceEngine, url: str, pattern: str, why: str = "") -> str:
    """GET url, expect a 302 whose Location matches pattern; the absolute URL."""
    status, headers, body = request("GET", url)
    loc = headers.get("location", "")
    assert status == 302 and re.fullmatch(pattern, loc), (
        f"GET {url}{why}: expected 302 to {pattern}, got {status} Location={loc!r} "
        f"body={body[:300]!r}{engine.log()}")
    return engine.base + loc


def play_bytes(engine: AceEngine, ih: str, expect: bytes, what: str, **selector: Any) -> str:
    """getstream?<selector> -> 302 /ace/r/<ih>/<key> whose body is expect; its URL."""
    url = redirect(engine, engine.url("/ace/getstream", **selector), rf"/ace/r/{ih}/{KEY}",
                   f" ({what})")
    status, headers, body = request("GET", url, timeout=60)
    assert status == 200 and body == expect, (
        f"{what}: GET {url}: expected 200 and the file's {len(expect)} bytes, got {status}, "
        f"{len(body)} bytes, equal prefix {common_prefix(body, expect)} bytes{engine.log()}")
    return url


def common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            return i + next(j for j in range(min(4096, n - i)) if a[i + j] != b[i + j])
    return n


def stream_types(probe: Dict[str, Any]) -> List[Tuple[str, str]]:
    return sorted((s["type"], s["codec"]) for s in probe["streams"])


def wait_playlist_end(engine: AceEngine, url: str, timeout: float = 40.0) -> str:
    """Polls a VOD playlist until it has #EXT-X-ENDLIST; its text."""
    deadline = time.monotonic() + timeout
    last: Tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        status, headers, body = request("GET", url, timeout=35)
        last = (status, body)
        if status == 200 and b"#EXT-X-ENDLIST" in body:
            assert "mpegurl" in headers.get("content-type", ""), headers
            return body.decode()
        time.sleep(0.5)
    raise AssertionError(f"GET {url}: expected a playlist with #EXT-X-ENDLIST within {timeout} s, "
                         f"last answer {last[0]}: {last[1][:500]!r}{engine.log()}")


class Reader(threading.Thread):
    """Reads an HTTP stream in the background, keeping its bytes (up to
    limit); stop() closes it."""

    def __init__(self, url: str, limit: int = 64 << 20) -> None:
        super().__init__(daemon=True)
        self.url, self.limit = url, limit
        self.status: Optional[int] = None
        self.data = bytearray()
        self.error: Optional[str] = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.start()

    def run(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        try:
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            r = conn.getresponse()
            self.status = r.status
            while not self._halt.is_set() and len(self.data) < self.limit:
                chunk = r.read1(65536)
                if not chunk:
                    break
                with self._lock:
                    self.data += chunk
        except Exception as e:  # noqa: BLE001 - reported to the test
            if not self._halt.is_set():
                self.error = repr(e)
        finally:
            conn.close()

    def size(self) -> int:
        with self._lock:
            return len(self.data)

    def snapshot(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def stop(self) -> None:
        self._halt.set()
        self.join(20)


def wait_for(pred: Any, timeout: float, what: str, details: Any = lambda: "") -> Any:
    return peers.wait_until(pred, timeout, what, interval=0.1, details=details)


# ------------------------------------------------ 1. torrent progressive ----

@need_lt
def test_getstream_torrent_is_the_file(tenv: TorrentEnv) -> None:
    e, size = tenv.engine, len(tenv.clip)
    url = play_bytes(e, tenv.ih, tenv.clip, "infohash=", infohash=tenv.ih)
    _, headers, _ = request("GET", url, {"Range": "bytes=0-0"})
    assert headers.get("content-type") == "video/mp4", (
        f"expected Content-Type video/mp4 for clip.mp4, got {headers}{e.log()}")
    # HEAD: the length, no body.
    status, headers, body = request("HEAD", url)
    assert (status, headers.get("content-length"), body) == (200, str(size), b""), (
        f"HEAD {url}: expected 200, Content-Length {size}, no body; got {status}, "
        f"{headers}, {len(body)} bytes{e.log()}")


@need_lt
def test_torrent_ranges(tenv: TorrentEnv) -> None:
    e, data, size = tenv.engine, tenv.clip, len(tenv.clip)
    url = redirect(e, e.url("/ace/getstream", infohash=tenv.ih), rf"/ace/r/{tenv.ih}/{KEY}")
    a = PIECE - 100  # crosses a piece boundary
    cases = {f"bytes={a}-{a + 999}": (a, a + 999),
             f"bytes={size - 5000}-": (size - 5000, size - 1),
             "bytes=-777": (size - 777, size - 1),
             f"bytes={size - 10}-{size + 1000}": (size - 10, size - 1)}
    for spec, (first, last) in cases.items():
        status, headers, body = request("GET", url, {"Range": spec})
        want_range = f"bytes {first}-{last}/{size}"
        assert (status, headers.get("content-range"), body) == (206, want_range,
                                                                data[first:last + 1]), (
            f"Range {spec}: expected 206, Content-Range {want_range!r} and "
            f"{last + 1 - first} bytes of the file; got {status}, "
            f"{headers.get('content-range')!r}, {len(body)} bytes "
            f"(equal: {body == data[first:last + 1]}){e.log()}")
        assert headers.get("content-length") == str(last + 1 - first), headers
    for spec in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
        status, headers, body = request("GET", url, {"Range": spec})
        assert status == 416 and headers.get("content-range") == f"bytes */{size}", (
            f"Range {spec} past the end ({size}): expected 416 with Content-Range bytes */{size}, "
            f"got {status} {headers} {body[:200]!r}{e.log()}")


@need_lt
def test_torrent_players(tenv: TorrentEnv) -> None:
    e = tenv.engine
    url = e.url("/ace/getstream", infohash=tenv.ih)  # players follow the 302 themselves
    probe = players.ffprobe(url)
    assert probe["rc"] == 0 and stream_types(probe) == [("audio", "aac"), ("video", "h264")], (
        f"ffprobe {url}: expected one H.264 and one AAC stream, got {probe}{e.log()}")
    ff = players.ffmpeg_read(url, CLIP_SECONDS + 5, timeout=60)
    frames = CLIP_SECONDS * FPS
    assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= frames - 5, (
        f"ffmpeg on {url}: expected exit 0, no error and ~{frames} frames, got {ff}{e.log()}")
    mpv = players.mpv_play(url, 100, timeout=40)
    assert mpv["rc"] == 0 and mpv["frames"] >= 50 and "h264" in (mpv["video"] or ""), (
        f"mpv on {url}: expected exit 0 after playing 100 H.264 frames, got {mpv}{e.log()}")


@need_lt
def test_torrent_file_index(tenv: TorrentEnv) -> None:
    e = tenv.engine
    srt = tenv.files["extra.srt"]
    url = play_bytes(e, tenv.ih, srt, "_idx=1", infohash=tenv.ih, _idx=1)
    _, headers, _ = request("HEAD", url)
    assert headers.get("content-type") == "application/x-subrip", (
        f"_idx=1 (extra.srt): expected Content-Type application/x-subrip, got {headers}{e.log()}")
    url = redirect(e, e.url("/ace/getstream", infohash=tenv.ih, _idx=2),
                   rf"/ace/r/{tenv.ih}/{KEY}", " (_idx=2)")
    status, body = get_json(url)
    assert status == 404 and body.get("response") is None and "_idx" in str(body.get("error")), (
        f"_idx=2 of a 2-file torrent: expected 404 with an error naming _idx, got {status} "
        f"{body}{e.log()}")


@need_lt
@pytest.mark.parametrize("kind", ["magnet", "data", "file_url", "http_url"])
def test_torrent_selectors(tenv: TorrentEnv, tmp_path: Path, kind: str) -> None:
    torrent_path = tmp_path / "x.torrent"
    torrent_path.write_bytes(tenv.torrent)
    server = None
    try:
        if kind == "magnet":
            selector = {"magnet": f"magnet:?xt=urn:btih:{tenv.ih}&dn={tenv.name}"}
        elif kind == "data":
            selector = {"data": base64.b64encode(tenv.torrent).decode()}
        elif kind == "file_url":
            selector = {"url": torrent_path.as_uri()}
        else:
            server = FileServer(tmp_path)
            selector = {"url": server.url("x.torrent")}
        play_bytes(tenv.engine, tenv.ih, tenv.clip, f"{kind} selector", **selector)
    finally:
        if server:
            server.close()


# --------------------------------------------------------- 2. torrent HLS ----

@need_lt
def test_torrent_vod_hls(tenv: TorrentEnv) -> None:
    e = tenv.engine
    manifest = e.url("/ace/manifest.m3u8", infohash=tenv.ih)
    playlist_url = redirect(e, manifest, rf"/ace/m/{tenv.ih}/{KEY}\.m3u8")
    text = wait_playlist_end(e, playlist_url)
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    bad = [u for u in uris if not re.fullmatch(rf"/ace/c/{tenv.ih}/0/\d+\.ts", u)]
    durations = [float(x) for x in re.findall(r"#EXTINF:([0-9.]+)", text)]
    assert uris and not bad and abs(sum(durations) - CLIP_SECONDS) < 1.5, (
        f"expected segments /ace/c/{tenv.ih}/0/<n>.ts adding up to {CLIP_SECONDS} s, got "
        f"{len(uris)} ({sum(durations):.2f} s), not matching: {bad[:3]}\n{text[:800]}{e.log()}")
    status, headers, body = request("GET", e.base + uris[0])
    assert status == 200 and headers.get("content-type") == "video/mp2t" and body[:1] == b"\x47", (
        f"segment {uris[0]}: expected 200 video/mp2t starting with a TS sync byte, got {status} "
        f"{headers} {body[:40]!r}{e.log()}")
    ff = players.ffmpeg_read(manifest, CLIP_SECONDS + 5, timeout=60)
    frames = CLIP_SECONDS * FPS
    assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= frames - 2 * FPS, (
        f"ffmpeg on {manifest}: expected ~{frames} frames decoded, no error, got {ff}{e.log()}")
    hls = players.hlsjs_play(manifest, advance_s=3.0, timeout=30)
    assert hls.get("ok") and hls.get("advanced", 0) >= 3.0, (
        f"hls.js on {manifest}: expected currentTime to advance 3 s, got {hls}{e.log()}")


# ------------------------------------------------------ 3. stat and stop ----

@need_lt
def test_torrent_stat_and_stop(tenv: TorrentEnv) -> None:
    e = tenv.engine
    status, started = get_json(e.url("/ace/getstream", infohash=tenv.ih, format="json",
                                     pid="stat-test"))
    r = started.get("response") or {}
    key = hashlib.md5(b"stat-test").hexdigest()
    stat_path = f"/ace/stat/{tenv.ih}/{key}"
    assert status == 200 and started.get("error") is None and r.get("playback_session_id") == key \
        and r.get("is_live") == 0 and r.get("stat_url", "").endswith(stat_path), (
            f"getstream format=json pid=stat-test: expected the envelope of key md5(pid) {key}, "
            f"got {status} {started}{e.log()}")
    reader = Reader(r["playback_url"])
    try:
        wait_for(lambda: reader.size() > 0 or reader.error, 30, "the first bytes", e.log)
        # the other file too, so every piece is wanted and total_progress can reach 100
        play_bytes(e, tenv.ih, tenv.files["extra.srt"], "_idx=1", infohash=tenv.ih, _idx=1)
        stats: List[Any] = []

        def done() -> bool:
            _, st = get_json(r["stat_url"])
            stats.append(st)
            resp = st.get("response") or {}
            return resp.get("status") == "dl" and resp.get("total_progress") == 100
        wait_for(done, 30, "stat status dl and total_progress 100",
                 lambda: f"stats: {stats[-2:]}{e.log()}")
        resp = stats[-1]["response"]
        ints = ("peers", "speed_down", "speed_up", "downloaded", "uploaded", "total_progress",
                "progress", "is_live", "is_encrypted", "client_session_id")
        wrong = {k: resp.get(k) for k in ints if not is_int(resp.get(k))}
        assert not wrong and resp["is_live"] == 0 and resp["infohash"] == tenv.ih \
            and resp["playback_session_id"] == key and resp["downloaded"] >= len(tenv.clip), (
                f"stat: expected integer {ints}, is_live 0, downloaded >= the clip; "
                f"not integers: {wrong}; got {resp}{e.log()}")
        status, body = get_json(r["command_url"] + "?method=stop")
        assert (status, body) == (200, {"response": "ok", "error": None}), (
            f"cmd stop: expected 200 {{'response': 'ok', 'error': None}}, got {status} {body}"
            f"{e.log()}")
        wait_for(lambda: not reader.is_alive(), 10, "the stopped stream to end", e.log)
        status, body = get_json(r["stat_url"])
        assert body == {"response": None, "error": UNKNOWN_SESSION}, (
            f"stat after stop: expected error {UNKNOWN_SESSION!r}, got {status} {body}{e.log()}")
    finally:
        reader.stop()


# --------------------------------------------------------- 4. server/api ----

@need_lt
def test_server_api(tenv: TorrentEnv) -> None:
    e = tenv.engine

    def call(method: str, **params: Any) -> Tuple[int, Any]:
        return get_json(e.url("/server/api", api_version=3, method=method, **params), timeout=40)

    status, body = call("get_api_access_token")
    token = (body.get("result") or {}).get("token")
    assert status == 200 and isinstance(token, str) and len(token) >= 16, (
        f"get_api_access_token: expected a token string, got {status} {body}{e.log()}")

    status, body = call("get_status")
    res = body.get("result") or {}
    version = res.get("version") or {}
    assert status == 200 and body.get("error") is None and res.get("playlist_loaded") is True \
        and is_int(version.get("code")) and isinstance(version.get("version"), str) \
        and isinstance(version.get("platform"), str) \
        and all(is_int(res.get(k)) for k in ("peers", "speed_down", "speed_up")), (
            f"get_status: expected playlist_loaded, version{{code,version,platform}} and "
            f"integer peers/speed_down/speed_up, got {status} {body}{e.log()}")

    status, body = call("get_network_connection_status")
    assert status == 200 and (body.get("result") or {}).get("connected") is True, (
        f"get_network_connection_status: expected connected true, got {status} {body}{e.log()}")

    meta = peers.bdecode(tenv.torrent)[b"info"]
    want = [{"index": i, "filename": "/".join([tenv.name, *(p.decode() for p in f[b"path"])]),
             "size": f[b"length"]} for i, f in enumerate(meta[b"files"])]
    status, body = call("get_media_files", infohash=tenv.ih)
    res = body.get("result") or {}
    got = [{k: f.get(k) for k in ("index", "filename", "size")} for f in res.get("files", [])]
    assert status == 200 and got == want and res.get("infohash") == tenv.ih \
        and res.get("name") == tenv.name and res.get("type") == "vod", (
            f"get_media_files infohash={tenv.ih}: expected files {want}, name {tenv.name}, "
            f"type vod; got {status} {body}{e.log()}")

    status, body = call("get_content_id", infohash=tenv.ih)
    cid = (body.get("result") or {}).get("content_id")
    assert status == 200 and isinstance(cid, str) and HEX40.fullmatch(cid), (
        f"get_content_id: expected a 40-hex content_id, got {status} {body}{e.log()}")
    play_bytes(e, tenv.ih, tenv.clip, f"content_id={cid} from get_content_id", content_id=cid)

    status, body = call("no_such_method")
    err = body.get("error")
    assert status == 404 and body.get("result") is None and isinstance(err, dict) \
        and err.get("code") == 0 and "no_such_method" in str(err.get("message")), (
            f"unknown method: expected 404 with error {{code: 0, message naming it}}, got "
            f"{status} {body}{e.log()}")


# ------------------------------------------------------------ 5. TCP API ----

def ace_handshake(ace: AceTcpClient, engine: AceEngine, product_key: str) -> Dict[str, str]:
    """HELLOBG version=4, READY with the key of reference §3, AUTH 1."""
    ace.send("HELLOBG version=4")
    hello = parse_kv(ace.expect("HELLOTS").split()[1:])
    assert re.fullmatch(r"[0-9a-f]{10}", hello.get("key", "")) and hello.get("version") \
        and hello.get("version_code", "").isdigit() \
        and hello.get("http_port") == str(engine.http_port), (
            f"HELLOTS: expected version, version_code, a 10-hex key and http_port="
            f"{engine.http_port}, got {hello}{engine.log()}")
    digest = hashlib.sha1((hello["key"] + product_key).encode()).hexdigest()
    ace.send(f"READY key={product_key.split('-')[0]}-{digest}")
    auth = ace.expect("AUTH")
    assert auth == "AUTH 1", f"READY with a well-formed key: expected AUTH 1, got {auth!r}"
    return hello


@need_lt
def test_tcp_api_torrent(tenv: TorrentEnv) -> None:
    e = tenv.engine
    with AceTcpClient(port=e.tcp_port, timeout=15) as bad:
        bad.send("HELLOBG version=4")
        bad.expect("HELLOTS")
        bad.send("READY key=not-a-key")
        auth = bad.expect("AUTH")
        assert auth == "AUTH 0" and bad.closed_by_engine(), (
            f"READY with a malformed key: expected AUTH 0 and the connection closed, got "
            f"{auth!r}, lines {bad.lines}{e.log()}")
    with AceTcpClient(port=e.tcp_port, timeout=15) as ace:
        ace_handshake(ace, e, "sometestkey-1234-5678")
        info = ace.loadasync("INFOHASH", tenv.ih, request_id=7)
        want = [[f"{tenv.name}/{n}", i] for i, n in enumerate(tenv.files)]
        assert info.get("status") == 2 and info.get("infohash") == tenv.ih \
            and info.get("files") == want, (
                f"LOADASYNC INFOHASH: expected status 2 and files {want}, got {info}{e.log()}")
        start = ace.start("INFOHASH", tenv.ih, 0, "http")
        url = start.get("url", "")
        assert re.fullmatch(rf"{re.escape(e.base)}/ace/r/{tenv.ih}/{KEY}", url) \
            and start.get("infohash") == tenv.ih and "stream" not in start, (
                f"START INFOHASH … output_format=http: expected "
                f"url={e.base}/ace/r/{tenv.ih}/<key>, infohash, no stream=1; got {start}{e.log()}")
        probe = players.ffprobe(url)
        assert stream_types(probe) == [("audio", "aac"), ("video", "h264")], (
            f"ffprobe on the START url: expected H.264 + AAC, got {probe}{e.log()}")
        ff = players.ffmpeg_read(url, CLIP_SECONDS + 5, timeout=60)
        assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= CLIP_SECONDS * FPS - 5, (
            f"ffmpeg on the START url: expected the whole clip decoded, got {ff}{e.log()}")
        st = ace.wait_status("dl", 15)
        # (peers may be 0 here: two seeds of a complete torrent disconnect; total_progress
        # is 100 only once the other file's pieces came too)
        assert 0 < st["total_progress"] <= 100 and st["downloaded"] >= len(tenv.clip), (
                f"STATUS: expected main:dl with total_progress in 1..100 and the clip's bytes "
                f"downloaded, got {st} "
                f"(lines {ace.lines[-5:]}){e.log()}")
        ace.stop()
        status, body = get_json(start["stat_url"])
        assert body.get("error") == UNKNOWN_SESSION, (
            f"stat after STOP: expected {UNKNOWN_SESSION!r}, got {status} {body}{e.log()}")
        # HLS of the same torrent
        start = ace.start("INFOHASH", tenv.ih, 0, "hls")
        url = start.get("url", "")
        assert re.fullmatch(rf"{re.escape(e.base)}/ace/m/{tenv.ih}/{KEY}\.m3u8", url), (
            f"START … output_format=hls: expected a /ace/m/…m3u8 url, got {start}{e.log()}")
        ff = players.ffmpeg_read(url, CLIP_SECONDS + 5, timeout=60)
        assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= (CLIP_SECONDS - 2) * FPS, (
            f"ffmpeg on the HLS START url: expected ~{CLIP_SECONDS} s decoded, got {ff}{e.log()}")
        ace.stop()
        assert ace.shutdown(), f"SHUTDOWN: expected the engine to close, lines {ace.lines[-5:]}"


@need_live
def test_tcp_api_live(lenv: LiveEnv) -> None:
    e = lenv.engine
    with AceTcpClient(port=e.tcp_port, timeout=15) as ace:
        ace_handshake(ace, e, "livekey-0000")
        info = ace.loadasync("PID", lenv.cid, request_id=3)
        assert info.get("status") == 1 and info.get("infohash") == lenv.cid, (
            f"LOADASYNC PID <cid>: expected status 1 for the broadcast, got {info}{e.log()}")
        start = ace.start("PID", lenv.cid, 0, "http")
        url = start.get("url", "")
        assert re.fullmatch(rf"{re.escape(e.base)}/ace/r/{lenv.cid}/{KEY}", url) \
            and start.get("stream") == "1", (
                f"START PID <cid> 0: expected url=…/ace/r/{lenv.cid}/<key> and stream=1, got "
                f"{start}{lenv.describe()}")
        ff = players.ffmpeg_read(url, 3, timeout=40)
        assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= 3 * FPS - 5, (
            f"ffmpeg on the live START url: expected 3 s decoded, got {ff}{lenv.describe()}")
        st = ace.wait_status("dl", 15)
        deadline = time.monotonic() + 10
        while not any(n == "livepos" for n, _ in ace.events):
            assert time.monotonic() < deadline, (
                f"expected EVENT livepos lines within 10 s, got {ace.lines[-10:]}{lenv.describe()}")
            ace.read_line(max(0.1, deadline - time.monotonic()))
        livepos = [kv for n, kv in ace.events if n == "livepos"][-1]
        assert livepos.get("is_live") == "1" and all(
            livepos.get(k, "").isdigit() for k in ("last", "live_first", "live_last", "pos")) \
            and int(livepos["live_first"]) <= int(livepos["live_last"]), (
                f"EVENT livepos: expected is_live=1 and numeric last/live_first/live_last/pos, "
                f"got {livepos}; status {st}{lenv.describe()}")
        ace.stop()
        # HLS of the broadcast
        start = ace.start("PID", lenv.cid, 0, "hls")
        url = start.get("url", "")
        assert re.fullmatch(rf"{re.escape(e.base)}/ace/m/{lenv.cid}/{KEY}\.m3u8", url) \
            and start.get("stream") == "1", (
                f"START PID … output_format=hls: expected a /ace/m/…m3u8 url and stream=1, got "
                f"{start}{lenv.describe()}")
        ff = players.ffmpeg_read(url, 3, timeout=50)
        assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= 3 * FPS - 5, (
            f"ffmpeg on the live HLS START url: expected 3 s decoded, got {ff}{lenv.describe()}")
        ace.stop()
        assert ace.shutdown(), f"SHUTDOWN: expected the engine to close, lines {ace.lines[-5:]}"


# ---------------------------------------------------- 6. an HLS source ----

@need_live
def test_hls_source(lenv: LiveEnv, tmp_path: Path) -> None:
    e = lenv.engine
    out = tmp_path / "hls"
    out.mkdir()
    source = peers.Proc([FFMPEG, "-nostdin", "-v", "error", "-re",
                         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
                         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                         "-g", str(FPS), "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
                         "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
                         "-hls_flags", "delete_segments", str(out / "live.m3u8")])
    server = FileServer(out)
    try:
        def segments() -> int:
            try:
                return (out / "live.m3u8").read_text().count("#EXTINF")
            except OSError:
                return 0
        wait_for(lambda: segments() >= 2, 20, "ffmpeg's first HLS segments", source.output)
        manifest_url = server.url("live.m3u8")
        api = e.url("/hls/manifest.m3u8", manifest_url=manifest_url)
        playlist = redirect(e, api, rf"/ace/m/({HEX40.pattern})/{KEY}\.m3u8")
        cid = re.search(r"/ace/m/([0-9a-f]{40})/", playlist).group(1)
        status, body = get_json(e.url("/hls/manifest.m3u8", manifest_url=manifest_url,
                                      format="json"))
        r = body.get("response") or {}
        assert status == 200 and body.get("error") is None and r.get("is_live") == 1 \
            and r.get("infohash") == cid and f"/ace/m/{cid}/" in r.get("playback_url", ""), (
                f"/hls/manifest.m3u8 format=json: expected the envelope of {cid} with is_live 1, "
                f"got {status} {body}{e.log()}")
        # The session's stat says "dl" once its playlist has segments to serve.
        stat_url = playlist.replace("/ace/m/", "/ace/stat/")[:-len(".m3u8")]
        stats: List[Any] = []

        def playing() -> bool:
            stats.append(get_json(stat_url)[1])
            return (stats[-1].get("response") or {}).get("status") == "dl"
        wait_for(playing, 20, f"stat status dl for the HLS source's session ({stat_url})",
                 lambda: f"last stat: {stats[-1:]}{e.log()}")
        ff = players.ffmpeg_read(playlist, 3, timeout=50)
        assert ff["rc"] == 0 and not ff["errors"] and ff["frames"] >= 3 * FPS - 5, (
            f"ffmpeg on {playlist}: expected >= 3 s decoded from the HLS source, got {ff}"
            f"{e.log()}\n--- source ffmpeg:\n{source.output(5)}")
    finally:
        server.close()
        source.stop()


# -------------------------------------------------------------- 7. liveseek ----

@need_live
def test_liveseek(lenv: LiveEnv) -> None:
    e = lenv.engine
    status, started = get_json(e.url("/ace/getstream", id=lenv.cid, format="json",
                                     pid="liveseek-test"))
    r = started.get("response") or {}
    assert status == 200 and r.get("is_live") == 1, f"getstream json: {status} {started}{e.log()}"
    reader = Reader(r["playback_url"])
    try:
        wait_for(lambda: reader.size() >= 4096 or reader.error, 20, "the first piece",
                 lenv.describe)
        stats: List[Any] = []

        def window() -> bool:  # a few pieces behind the reader's first one
            _, st = get_json(r["stat_url"])
            stats.append(st)
            lp = (st.get("response") or {}).get("livepos") or {}
            return lp and int(lp["live_last"]) - int(lp["live_first"]) >= 3
        wait_for(window, 20, "3 pieces in the live window",
                 lambda: f"stats {stats[-2:]}{lenv.describe()}")
        livepos = stats[-1]["response"]["livepos"]
        first_bytes = reader.snapshot()[:4096]
        before = reader.size()
        status, body = get_json(r["command_url"] + "?" + urllib.parse.urlencode(
            {"method": "liveseek", "pos": livepos["live_first"]}))
        assert (status, body) == (200, {"response": "ok", "error": None}), (
            f"liveseek pos={livepos['live_first']} (livepos {livepos}): expected ok, got "
            f"{status} {body}{lenv.describe()}")

        def resent() -> bool:
            return first_bytes in reader.snapshot()[before:]
        wait_for(resent, 1.0, "the reader's first bytes again within 1 s of the liveseek",
                 lambda: f"{reader.size() - before} bytes since the seek; reader error "
                 f"{reader.error}{lenv.describe()}")
        for pos in (str(int(time.time()) + 10**6), "soon"):
            status, body = get_json(r["command_url"] + "?" + urllib.parse.urlencode(
                {"method": "liveseek", "pos": pos}))
            assert status == 400 and body.get("response") is None \
                and "pos" in str(body.get("error")), (
                    f"liveseek pos={pos} (window {livepos['live_first']}..): expected 400 with "
                    f"an error naming pos, got {status} {body}{e.log()}")
    finally:
        reader.stop()
        request("GET", r.get("command_url", e.base + "/ace/cmd/x/y") + "?method=stop")


# ------------------------------------------------------ 8. remote access ----

def local_non_loopback_ip() -> Optional[str]:
    """An IPv4 address of this machine outside 127/8 (connecting to it from
    here makes the engine see a non-loopback client), or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next((a for a in out.split() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a)
                 and not a.startswith("127.")), None)


@need_live
def test_remote_clients_need_the_token_and_their_urls_carry_it(lenv: LiveEnv, tmp_path: Path) -> None:
    ip = local_non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    token = "s3cret-token"
    sets = {"engine.allow_remote_access": "true", "engine.api_token": token}
    with AceEngine([lenv.broadcast.peer], tmp_path / "open2",
                   sets={**sets, "engine.http_address": "0.0.0.0:0"}) as e:
        port = int(e.base.rsplit(":", 1)[1])
        remote = f"http://{ip}:{port}"
        q = urllib.parse.urlencode({"id": lenv.cid, "format": "json"})
        status, _, body = request("GET", f"{remote}/ace/getstream?{q}")
        assert status == 403 and ip.encode() in body, f"no token: expected 403 naming {ip}, got {status} {body[:200]!r}"
        status, _, body = request("GET", f"{remote}/ace/getstream?{q}&token=wrong")
        assert status == 403, f"wrong token: expected 403, got {status}"
        status, doc = get_json(f"{remote}/ace/getstream?{q}&token={token}")
        assert status == 200 and doc["error"] is None, doc
        resp = doc["response"]
        for k in ("playback_url", "stat_url", "command_url"):
            assert resp[k].endswith(f"?token={token}"), f"{k} lacks the token: {resp[k]}"
        # The player follows those URLs from the remote address.
        play = remote + resp["playback_url"][resp["playback_url"].index("/ace/"):]
        got = players.ffmpeg_read(play, 2)
        assert got["frames"] > 0, f"remote player decoded nothing: {got}{e.log()}"
        stat = remote + resp["stat_url"][resp["stat_url"].index("/ace/"):]
        status, st = get_json(stat)
        assert status == 200 and st["error"] is None, st
        # HLS: the playlist's segment URIs carry the token too.
        hq = urllib.parse.urlencode({"id": lenv.cid, "token": token})
        status, headers, _ = request("GET", f"{remote}/ace/manifest.m3u8?{hq}")
        assert status == 302 and headers["location"].endswith(f"?token={token}"), headers
        status, _, pl = request("GET", remote + headers["location"], timeout=40)
        seg_lines = [ln for ln in pl.decode().splitlines() if ln.startswith("/ace/c/")]
        assert status == 200 and seg_lines and all(ln.endswith(f"?token={token}") for ln in seg_lines), pl[:400]
        status, _, seg = request("GET", remote + seg_lines[-1])
        assert status == 200 and seg[:1] == b"\x47", f"segment from the remote address: {status}"
        # get_api_access_token never answers a remote client.
        status, _, _ = request("GET", f"{remote}/server/api?method=get_api_access_token&token={token}")
        assert status == 403
    # Without allow_remote_access the token does not help.
    with AceEngine([lenv.broadcast.peer], tmp_path / "closed",
                   sets={"engine.api_token": token, "engine.http_address": "0.0.0.0:0"}) as e:
        port = int(e.base.rsplit(":", 1)[1])
        status, _, body = request("GET", f"http://{ip}:{port}/ace/getstream?id={lenv.cid}&token={token}")
        assert status == 403 and b"allow_remote_access" in body, f"{status} {body[:200]!r}"
