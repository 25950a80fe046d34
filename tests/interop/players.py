"""Real media players pointed at an HTTP URL, each bounded by a timeout.

Every wrapper returns facts (a dict), not only a verdict: what the player
reported it demuxed and decoded, its exit status, the warnings it logged and
how long it ran, so a failing assertion can print what happened.

- ffprobe(url): the streams and codecs ffprobe finds.
- ffmpeg_read(url, seconds) / start_ffmpeg(): ffmpeg decodes every stream to
  the null muxer and copies the input to a file, so ``frames`` (video frames
  decoded, from -progress) and ``bytes`` (of stream read) can be watched
  while it runs.
- mpv_play(url, frames) / start_mpv(): mpv --vo=null --ao=null --frames=N;
  a small Lua script logs the last frame number, position and drops.
- vlc_play(url, seconds) / start_vlc(): cvlc --play-and-exit --run-time=S with
  dummy outputs and -vv, whose log says which demuxer and decoders ran and
  when the first picture was decoded. VLC refuses to run as root ("VLC is not
  supposed to be run as root"): as root it runs as user nobody through
  setpriv, with a temporary HOME.
- hlsjs_play(url, advance_s): web/hls_play.js (hls.js in headless Chromium
  through playwright-core), its JSON line.

A wrapper whose tool is missing calls pytest.skip with the reason. The
start_* forms return a running player: poll it, kill() it, or result(timeout)
(which kills it when the timeout passes and says so: ``timed_out``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")
MPV = shutil.which("mpv")
CVLC = shutil.which("cvlc")
SETPRIV = shutil.which("setpriv")
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEB_DIR = Path(__file__).resolve().parent / "web"
HLS_PLAY = WEB_DIR / "hls_play.js"

RW_TIMEOUT_US = 10_000_000  # ffmpeg/ffprobe: give up on a socket silent for 10 s
LOG_LIMIT = 4000            # log lines kept in a result


def need(tool: Optional[str], what: str) -> str:
    """tool's path, or pytest.skip naming what is missing."""
    if not tool:
        pytest.skip(f"{what} is not installed (scripts/setup-deps)")
    return tool


def _lines(text: str) -> List[str]:
    """Lines of a player log; carriage-return redraws count as line ends and
    terminal escapes are dropped."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text.replace("\r", "\n"))
    return [line for line in text.split("\n") if line.strip()]


class PlayerRun:
    """A player process whose stdout and stderr go to a log file (no pipe to
    fill up). Subclasses add facts parsed from the log."""

    name = "player"

    def __init__(self, argv: Sequence[Any], workdir: Optional[Path] = None,
                 env: Optional[Dict[str, str]] = None, **popen: Any) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="player-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.argv = [str(a) for a in argv]
        self.log_path = self.workdir / f"{self.name}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.ended: Optional[float] = None
        self.killed = False
        self.timed_out = False
        try:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True, **popen)
        except BaseException:
            self._log.close()
            raise

    def running(self) -> bool:
        if self.popen.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.monotonic()
        return False

    def elapsed(self) -> float:
        self.running()
        return (self.ended or time.monotonic()) - self.started

    def log(self) -> List[str]:
        try:
            return _lines(self.log_path.read_bytes().decode("utf-8", "replace"))[-LOG_LIMIT:]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to the player's process group (a player that vanishes)."""
        if self.popen.poll() is None:
            self.killed = True
        self._sigkill()

    def _sigkill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(5)
        self.running()

    def wait(self, timeout: float) -> Optional[int]:
        """Waits up to timeout s for the exit; kills the player when it runs
        over (timed_out). Returns the exit status."""
        try:
            self.popen.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self._sigkill()
        self.running()
        self._log.close()
        return self.popen.returncode

    def facts(self) -> Dict[str, Any]:
        return {"player": self.name, "rc": self.popen.poll(), "elapsed_s": round(self.elapsed(), 2),
                "timed_out": self.timed_out, "killed": self.killed}

    def result(self, timeout: float) -> Dict[str, Any]:
        """Waits (bounded) and returns the facts, the log's tail included."""
        self.wait(timeout)
        out = self.facts()
        out["log_tail"] = self.log()[-15:]
        return out

    def close(self) -> None:
        self._sigkill()
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------- ffmpeg ----

def ffprobe(url: str, timeout: float = 30.0) -> Dict[str, Any]:
    """ffprobe -show_streams: {"rc", "streams": [{"type", "codec", ...}],
    "format", "errors", "elapsed_s", "timed_out"}."""
    exe = need(FFPROBE, "ffprobe")
    argv = [exe, "-v", "error", "-rw_timeout", str(RW_TIMEOUT_US), "-show_streams",
            "-show_format", "-of", "json", url]
    started = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return {"rc": None, "streams": [], "format": None, "timed_out": True,
                "errors": _lines(e.stderr.decode() if isinstance(e.stderr, bytes)
                                 else e.stderr or ""), "elapsed_s": timeout}
    try:
        data = json.loads(r.stdout or "{}")
    except ValueError:
        data = {}
    streams = [{"type": s.get("codec_type"), "codec": s.get("codec_name"),
                "width": s.get("width"), "height": s.get("height"),
                "sample_rate": s.get("sample_rate"), "channels": s.get("channels")}
               for s in data.get("streams", [])]
    return {"rc": r.returncode, "streams": streams,
            "format": (data.get("format") or {}).get("format_name"), "timed_out": False,
            "errors": _lines(r.stderr), "elapsed_s": round(time.monotonic() - started, 2)}


class FfmpegRun(PlayerRun):
    """ffmpeg decoding every stream of url (to the null muxer) and copying the
    input to a file, for seconds of media (None: until killed)."""

    name = "ffmpeg"

    def __init__(self, url: str, seconds: Optional[float] = None,
                 workdir: Optional[Path] = None) -> None:
        exe = need(FFMPEG, "ffmpeg")
        wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ffmpeg-"))
        self.progress_path = wd / "progress.txt"
        self.copy_path = wd / "copy.ts"
        limit = ["-t", str(seconds)] if seconds else []
        argv = [exe, "-nostdin", "-hide_banner", "-v", "error", "-rw_timeout",
                str(RW_TIMEOUT_US), "-progress", self.progress_path, "-stats_period", "0.25",
                "-i", url, "-map", "0", *limit, "-f", "null", "-",
                "-map", "0", "-c", "copy", *limit, "-flush_packets", "1", "-f", "mpegts",
                self.copy_path]
        super().__init__(argv, wd)

    def frames(self) -> int:
        """Video frames decoded so far (the latest -progress report)."""
        try:
            text = self.progress_path.read_text(errors="replace")
        except OSError:
            return 0
        found = re.findall(r"^frame=(\d+)", text, re.M)
        return int(found[-1]) if found else 0

    def bytes(self) -> int:
        """Bytes of the stream read so far (the size of the copy)."""
        try:
            return self.copy_path.stat().st_size
        except OSError:
            return 0

    def facts(self) -> Dict[str, Any]:
        out = super().facts()
        # -v error: every line ffmpeg logs is an error
        out.update(frames=self.frames(), bytes=self.bytes(), errors=self.log()[:20])
        return out


def start_ffmpeg(url: str, seconds: Optional[float] = None) -> FfmpegRun:
    return FfmpegRun(url, seconds)


def ffmpeg_read(url: str, seconds: float, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Decodes seconds of url: {"rc", "frames", "bytes", "errors", ...}."""
    run = FfmpegRun(url, seconds)
    try:
        return run.result(timeout if timeout is not None else seconds + 30)
    finally:
        run.close()


# ------------------------------------------------------------------- mpv ----

# A script mpv loads (--script): counts the updates of time-pos (one per
# video frame shown; notifications can coalesce, so a lower bound), keeps
# the last position and drop counters, and logs them when playback ends as
# "[report] MPVSTAT pos=... frame=... drop=... vdrop=..." (mpv prints no
# status line without a terminal, and its estimated-frame-number stays 0 on
# a live stream of unknown duration).
MPV_SCRIPT = """
local last = {pos = "none", drop = "0", vdrop = "0"}
local shown = 0
local function keep(key)
  return function(_, value) if value ~= nil then last[key] = tostring(value) end end
end
mp.observe_property("time-pos", "number", function(_, value)
  if value ~= nil then shown = shown + 1; last.pos = tostring(value) end
end)
mp.observe_property("frame-drop-count", "number", keep("drop"))
mp.observe_property("decoder-frame-drop-count", "number", keep("vdrop"))
mp.register_event("end-file", function()
  mp.msg.info(string.format("MPVSTAT pos=%s frame=%d drop=%s vdrop=%s",
                            last.pos, shown, last.drop, last.vdrop))
end)
"""


class MpvRun(PlayerRun):
    """mpv --vo=null --ao=null --frames=N on url."""

    name = "mpv"

    def __init__(self, url: str, frames: int) -> None:
        exe = need(MPV, "mpv")
        self.frames_asked = frames
        wd = Path(tempfile.mkdtemp(prefix="mpv-"))
        script = wd / "report.lua"
        script.write_text(MPV_SCRIPT)
        super().__init__([exe, "--no-config", "--vo=null", "--ao=null", f"--frames={frames}",
                          "--network-timeout=10", "--msg-level=all=info", f"--script={script}",
                          url], wd)

    def facts(self) -> Dict[str, Any]:
        out = super().facts()
        log = self.log()
        status = [m.groupdict() for line in log for m in
                  [re.search(r"MPVSTAT pos=(?P<pos>\S+) frame=(?P<frame>\S+) "
                             r"drop=(?P<drop>\S+) vdrop=(?P<vdrop>\S+)", line)] if m]
        last = status[-1] if status else {}

        def num(key: str) -> Optional[float]:
            try:
                return float(last.get(key, ""))
            except ValueError:
                return None
        exiting = [line.split("Exiting...", 1)[1].strip(" ()") for line in log
                   if "Exiting..." in line]
        out.update(
            exit_reason=exiting[-1] if exiting else None,
            video=next((m.group(1) for line in log
                        for m in [re.search(r"\(\+\) Video --vid=\d+ .*?\((.*)\)", line)] if m),
                       None),
            audio=next((m.group(1) for line in log
                        for m in [re.search(r"\(\+\) Audio --aid=\d+ .*?\((.*)\)", line)] if m),
                       None),
            vo=next((line.split("]", 1)[1].strip() for line in log
                     if line.startswith("VO: [")), None),
            frames=int(num("frame") or 0), position=num("pos"),
            dropped=int(num("drop") or 0), decoder_dropped=int(num("vdrop") or 0),
            warnings=[line for line in log if "MPVSTAT" not in line and re.search(
                r"invalid|error|fail|desync|reset|cannot|can't|broken", line, re.I)][:20])
        return out


def start_mpv(url: str, frames: int) -> MpvRun:
    return MpvRun(url, frames)


def mpv_play(url: str, frames: int, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Plays frames video frames of url: {"rc", "exit_reason", "video",
    "audio", "vo", "frames", "position", "dropped", "warnings", ...}."""
    run = MpvRun(url, frames)
    try:
        return run.result(timeout if timeout is not None else frames / 25 + 30)
    finally:
        run.close()


# ------------------------------------------------------------------- VLC ----

# Lines VLC logs on any headless machine, not about the stream.
VLC_NOISE = re.compile(r"dbus|interface|globalhotkeys|D-Bus|no suitable|keystore|"
                       r"media library|ml\.xspf|lua|looking for|probing", re.I)


def _vlc_user_prefix(workdir: Path) -> Tuple[List[str], Dict[str, str]]:
    """(argv prefix, environment): as root, run as nobody (VLC exits at once
    when run as root) with a HOME it can write."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    if os.geteuid() != 0:
        return [], env
    need(SETPRIV, "setpriv (util-linux, to run VLC as nobody instead of root)")
    nobody = pwd.getpwnam("nobody")
    for path in (workdir, home):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return [SETPRIV, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", "--"], env


class VlcRun(PlayerRun):
    """cvlc --play-and-exit --run-time=seconds on url, dummy outputs, -vv."""

    name = "vlc"

    def __init__(self, url: str, seconds: float) -> None:
        exe = need(CVLC, "cvlc (vlc-bin + vlc-plugin-base)")
        wd = Path(tempfile.mkdtemp(prefix="vlc-"))
        prefix, env = _vlc_user_prefix(wd)
        super().__init__([*prefix, exe, "--play-and-exit", f"--run-time={seconds}",
                          "--vout=dummy", "--aout=dummy", "--no-media-library",
                          "--no-interact", "--no-video-title-show", "-vv", url], wd, env=env)

    def facts(self) -> Dict[str, Any]:
        out = super().facts()
        log = self.log()

        def found(pattern: str) -> List[str]:
            return [m.group(1) for line in log for m in [re.search(pattern, line)] if m]
        out.update(
            http_status=[int(s) for s in found(r"^HTTP/1\.[01] (\d{3})")],
            redirects=found(r"redirecting to: (\S+)"),
            demux=found(r'using demux module "(\w+)"'),
            video_decoder=found(r'using video decoder module "(\w+)"')[:1],
            audio_decoder=found(r'using audio decoder module "(\w+)"')[:1],
            first_picture=any("Received first picture" in line for line in log),
            video_size=(found(r"Reinit context to (\d+x\d+)") or [None])[-1],
            buffering_done=any("Stream buffering done" in line for line in log),
            eof=any("EOF reached" in line for line in log),
            late_pictures=sum("too late" in line for line in log),
            errors=[line for line in log if " error: " in line and not VLC_NOISE.search(line)][:20],
            warnings=[line for line in log if " warning: " in line
                      and not VLC_NOISE.search(line)][:20])
        return out


def start_vlc(url: str, seconds: float) -> VlcRun:
    return VlcRun(url, seconds)


def vlc_play(url: str, seconds: float, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Plays seconds of url with cvlc: {"rc", "http_status", "redirects",
    "demux", "video_decoder", "audio_decoder", "first_picture", "video_size",
    "eof", "errors", "warnings", ...}."""
    run = VlcRun(url, seconds)
    try:
        return run.result(timeout if timeout is not None else seconds + 30)
    finally:
        run.close()


# ---------------------------------------------------------------- hls.js ----

def hlsjs_play(url: str, advance_s: float = 3.0, timeout: float = 30.0,
               cross_origin: bool = False) -> Dict[str, Any]:
    """hls.js in headless Chromium plays url (an m3u8) until currentTime has
    advanced advance_s: the JSON line of web/hls_play.js ({"ok",
    "currentTime", "advanced", "errors", "fragsLoaded", ...}) plus "rc"."""
    node = need(NODE, "node")
    chromium = need(CHROMIUM, "chromium")
    for package in ("playwright-core", "hls.js"):
        if not (WEB_DIR / "node_modules" / package / "package.json").is_file():
            pytest.skip(f"{package} is not in {WEB_DIR}/node_modules (scripts/setup-deps)")
    argv = [node, str(HLS_PLAY), url, "--advance", str(advance_s), "--timeout", str(timeout),
            "--chromium", chromium] + (["--cross-origin"] if cross_origin else [])
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60,
                           cwd=WEB_DIR, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "rc": None, "errors": [f"hls_play.js ran over {timeout + 60} s"]}
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    try:
        out = json.loads(lines[-1]) if lines else {}
    except ValueError:
        out = {}
    if not out:
        out = {"ok": False, "errors": [f"no JSON from hls_play.js: {r.stdout[-500:]}"
                                       f"{r.stderr[-1500:]}"]}
    out["rc"] = r.returncode
    return out
