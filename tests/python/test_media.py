"""Media jobs through the installed Python package: the media module
(libopenace_media.so) must be found beside the extension and load on demand."""
import json
import os
import subprocess
import sys

import openace
from conftest import CONFIG


def test_serving_alone_never_loads_ffmpeg():
    # A fresh interpreter: the module, once loaded, stays for the process.
    code = ("import json, openace\n"
            "with openace.Engine(json.loads(%r)) as e:\n"
            "    e.stats()\n"
            "    print(json.dumps(e.stats()['engines']['segmenter']['details']['ffmpeg']))\n"
            "print(sum('libavformat' in l for l in open('/proc/self/maps')))\n") % json.dumps(CONFIG)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    ffmpeg_line, maps_line = out.stdout.strip().splitlines()[-2:]
    assert json.loads(ffmpeg_line)["loaded"] is False
    assert maps_line == "0"


def test_segment_job_writes_hls_that_ffprobe_reads(tmp_path):
    out = tmp_path / "hls"
    with openace.Engine(CONFIG) as engine:
        result = engine.run({
            "type": "segment",
            "input": "lavfi:testsrc2=size=320x240:rate=25:duration=4",
            "output_dir": str(out),
            "segment_duration": 2,
        }, timeout=120)
        ffmpeg = engine.stats()["engines"]["segmenter"]["details"]["ffmpeg"]
    assert result["segments"] == 2
    playlist = out / "index.m3u8"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    # The module came from the installed package, beside the extension.
    assert ffmpeg["loaded"] is True
    assert os.path.dirname(ffmpeg["module"]) == os.path.dirname(openace._openace.__file__)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(playlist)],
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stderr == ""
    assert abs(float(probe.stdout) - 4.0) < 0.1


def test_segment_job_with_a_missing_input_fails_naming_it(tmp_path):
    with openace.Engine(CONFIG) as engine:
        try:
            engine.run({"type": "segment", "input": str(tmp_path / "nope.mp4"),
                        "output_dir": str(tmp_path / "out")}, timeout=60)
        except openace.Error as e:
            assert "nope.mp4" in str(e)
        else:
            raise AssertionError("a missing input must fail")
