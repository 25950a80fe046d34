#!/usr/bin/python3
"""Idle BitTorrent peers, for the transport benchmark's memory figure.

As a module (bench/transport_bench.py imports it): ``IdlePeers`` opens TCP
connections to a seeder; each sends the 68-byte BEP 3 handshake for the
torrent (extension-protocol and fast-extension bits set, its own peer id),
reads the seeder's handshake back, and then says nothing more. Whatever the
seeder sends afterwards (bitfield, extension handshake, keep-alives) is read
and dropped, so a connection counts as held until the seeder closes it.

As a script, run with /usr/bin/python3 (the interpreter python3-libtorrent
is built for):

  idle_peers.py lt-seed PATH --piece-size N [--connections N]
      a libtorrent seeder like `tests/interop/lt_peer.py seed`, with its
      connection limits raised (libtorrent keeps 200 by default) so that
      hundreds of idle peers stay connected; prints `infohash <hex>` and
      `port <n>`, then seeds until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
import peers  # noqa: E402  (needs the path above)

PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68


def handshake(info_hash: bytes, peer_id: bytes) -> bytes:
    """The BEP 3 handshake with the BEP 10 (extension protocol) and BEP 6
    (fast extension) bits set in the reserved bytes."""
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("handshake: info_hash and peer_id must be 20 bytes each")
    reserved = bytearray(8)
    reserved[5] |= 0x10
    reserved[7] |= 0x04
    return PROTOCOL + bytes(reserved) + info_hash + peer_id


class IdlePeers:
    """Connections to one seeder that handshake and then stay idle.

    open(n) adds n connections, one after another (each waits for the
    seeder's handshake, at most `timeout` seconds); refused ones are
    counted, not raised. held() says how many the seeder still keeps open.
    Use as a context manager, or call close().
    """

    def __init__(self, peer: Tuple[str, int], infohash_hex: str, timeout: float = 10.0) -> None:
        self.peer = peer
        self.info_hash = bytes.fromhex(infohash_hex)
        if len(self.info_hash) != 20:
            raise ValueError(f"not a v1 infohash: {infohash_hex!r}")
        self.timeout = timeout
        self.refused: List[str] = []
        self._open: Dict[int, socket.socket] = {}
        self._poll = select.poll()
        self._made = 0

    def open(self, count: int) -> None:
        for _ in range(count):
            index = self._made
            self._made += 1
            peer_id = b"-OB0001-" + f"{index:012d}".encode()
            try:
                s = socket.create_connection(self.peer, timeout=self.timeout)
            except OSError as e:
                self.refused.append(f"connection {index}: connect: {e}")
                continue
            try:
                s.sendall(handshake(self.info_hash, peer_id))
                self._read_handshake(s)
            except (OSError, ValueError) as e:
                self.refused.append(f"connection {index}: {e}")
                s.close()
                continue
            s.setblocking(False)
            self._open[s.fileno()] = s
            self._poll.register(s, select.POLLIN)

    def _read_handshake(self, s: socket.socket) -> None:
        deadline = time.monotonic() + self.timeout
        buf = b""
        while len(buf) < HANDSHAKE_LEN:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValueError(f"no handshake back within {self.timeout:.0f} s")
            s.settimeout(left)
            chunk = s.recv(HANDSHAKE_LEN - len(buf))
            if not chunk:
                raise ValueError(f"closed by the seeder after {len(buf)} handshake bytes")
            buf += chunk
        if not buf.startswith(PROTOCOL) or buf[28:48] != self.info_hash:
            raise ValueError(f"not a handshake for this torrent: {buf[:48]!r}")

    def drain(self, seconds: float = 0.0) -> None:
        """Reads and drops what the seeder sends for `seconds` (0: what is
        there now); notes the connections it closed."""
        deadline = time.monotonic() + seconds
        while self._open:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            events = self._poll.poll(wait_ms)
            for fd, _ in events:
                s = self._open.get(fd)
                if s is None:
                    continue
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._poll.unregister(fd)
                    del self._open[fd]
                    s.close()
            if not events and time.monotonic() >= deadline:
                return

    def held(self) -> int:
        """Connections the seeder still keeps open (no EOF, no reset so far)."""
        self.drain(0.0)
        return len(self._open)

    def close(self) -> None:
        for s in self._open.values():
            self._poll.unregister(s)
            s.close()
        self._open.clear()

    def __enter__(self) -> "IdlePeers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lt_seed(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    seeder = peers.LtSeeder(args.path, piece_size=args.piece_size, timeout=args.start_timeout)
    try:
        seeder.ses.apply_settings({"connections_limit": args.connections,
                                   "listen_queue_size": 256})
        seeder.handle.set_max_connections(args.connections)
        print(f"infohash {seeder.infohash}")
        print(f"port {seeder.port}", flush=True)
        while not stop.wait(0.5):
            seeder.poll()  # keeps the alert queue drained
    finally:
        seeder.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("lt-seed", help="seed a file from libtorrent with high connection limits")
    s.add_argument("path")
    s.add_argument("--piece-size", type=int, default=262144,
                   help="bytes, a multiple of 16384 (v1-only torrent)")
    s.add_argument("--connections", type=int, default=10000)
    s.add_argument("--start-timeout", type=float, default=30.0)
    args = ap.parse_args()
    if not peers.HAVE_LIBTORRENT:
        print("idle_peers: libtorrent is not importable; run with /usr/bin/python3",
              file=sys.stderr)
        return 2
    return lt_seed(args)


if __name__ == "__main__":
    sys.exit(main())
