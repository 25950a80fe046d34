#!/usr/bin/python3
"""A libtorrent peer on 127.0.0.1 for benchmarks and manual interop checks.

Run it with /usr/bin/python3 (the interpreter python3-libtorrent is built for):

  lt_peer.py seed PATH --piece-size N [--tracker URL]... [--port P] [--torrent-out FILE]
      prints `infohash <hex>`, `magnet <uri>`, `port <n>`, `torrent <file>`,
      then seeds until SIGTERM or SIGINT.

  lt_peer.py download MAGNET|TORRENT --peer HOST:PORT... -o DIR
             [--tracker URL]... [--sequential] [--timeout S]
      prints `progress <fraction> peers <n>` about twice a second, then
      `done <seconds> first_byte <seconds>` (first_byte: piece 0 verified) and
      exits 0; exits 1 with the reason on stderr when it times out.
"""

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (needs the path above)


def seed(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    seeder = peers.LtSeeder(args.path, piece_size=args.piece_size, trackers=args.tracker,
                            port=args.port, timeout=args.start_timeout)
    try:
        torrent = seeder.torrent_path
        if args.torrent_out:
            torrent = Path(args.torrent_out)
            torrent.write_bytes(seeder.torrent_bytes)
        print(f"infohash {seeder.infohash}")
        print(f"magnet {seeder.magnet}")
        print(f"port {seeder.port}")
        print(f"torrent {torrent}", flush=True)
        while not stop.wait(0.5):
            seeder.poll()  # keeps the alert queue drained
    finally:
        seeder.close()
    return 0


def download(args: argparse.Namespace) -> int:
    source = args.source
    if not source.startswith("magnet:") and not Path(source).is_file():
        print(f"lt_peer: {source} is neither a magnet URI nor a file", file=sys.stderr)
        return 2
    with peers.LtDownloader(args.output, source, peers=[peers.parse_peer(p) for p in args.peer],
                            trackers=args.tracker, sequential=args.sequential) as dl:
        deadline = time.monotonic() + args.timeout
        while True:
            st = dl.status()
            print(f"progress {dl.progress():.3f} peers {st.num_peers if st else 0}", flush=True)
            try:
                elapsed = dl.wait_complete(min(0.5, max(0.0, deadline - time.monotonic())))
                break
            except peers.HarnessTimeout:
                if time.monotonic() >= deadline:
                    print(f"lt_peer: not complete after {args.timeout} s\n{dl.details()}",
                          file=sys.stderr)
                    return 1
        first = dl.first_byte_time()
        print(f"done {elapsed:.3f} first_byte {first if first is None else f'{first:.3f}'}",
              flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed", help="seed a file or directory")
    s.add_argument("path")
    s.add_argument("--piece-size", type=int, default=32768,
                   help="bytes, a multiple of 16384 (v1-only torrent)")
    s.add_argument("--tracker", action="append", default=[])
    s.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: any)")
    s.add_argument("--torrent-out", help="also write the .torrent here")
    s.add_argument("--start-timeout", type=float, default=30.0)
    d = sub.add_parser("download", help="download a magnet or .torrent")
    d.add_argument("source")
    d.add_argument("--peer", action="append", default=[], help="HOST:PORT to connect to")
    d.add_argument("--tracker", action="append", default=[])
    d.add_argument("-o", "--output", required=True, help="directory to save into")
    d.add_argument("--sequential", action="store_true",
                   help="download in order with deadlines on the first pieces")
    d.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    if not peers.HAVE_LIBTORRENT:
        print("lt_peer: libtorrent is not importable; run with /usr/bin/python3", file=sys.stderr)
        return 2
    return seed(args) if args.cmd == "seed" else download(args)


if __name__ == "__main__":
    sys.exit(main())
