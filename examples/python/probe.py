#!/usr/bin/env python3
"""Start an OpenAce engine, run a probe job, print what FFmpeg and the
hardware offer.

    pip install --no-build-isolation .      # from the repository root
    python3 examples/python/probe.py
"""

import sys

import openace


def main() -> int:
    # Port 0: any free port, so this runs next to an engine already on 6878.
    config = {"engine": {"http_address": "127.0.0.1:0"}, "logging": {"console": False}}
    try:
        with openace.Engine(config) as engine:
            info = engine.run({"type": "probe"}, timeout=60)
            print(f"OpenAce {info['version']} ({info.get('build_type', '?')}), "
                  f"HTTP API on http://{engine.http_address()}/")
    except openace.Error as err:
        print(f"probe failed: {err} [{err.name}]", file=sys.stderr)
        return 1

    ffmpeg = info["ffmpeg"]
    print(f"FFmpeg {ffmpeg.get('version', '?')} (libavformat {ffmpeg.get('libavformat', '?')})")
    devices = info.get("hardware_devices", [])
    if not devices:
        print("hardware devices: none known to this FFmpeg build")
    for dev in devices:
        state = "available" if dev.get("available") else f"unavailable: {dev.get('error', '?')}"
        print(f"  {dev.get('type', '?'):14} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
