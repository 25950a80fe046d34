"""A minimal `oa_live` peer in pure Python, for attacking OpenAce viewers.

It speaks the live wire format of docs/protocol.md: the BitTorrent handshake
(info hash = content id, the BEP 10 bit), the BEP 10 extension handshake
with "m": {"oa_live": N, "ut_pex": M} and the oa_live_* keys, and the eight
oa_live messages (encode_* / decode_live below, strict like the C++ codec).

``LivePeer`` listens on 127.0.0.1 (viewers reach it with ``--peer``), can
dial a viewer itself (``dial``), and may fetch genuine heads, pieces and the
descriptor from an upstream peer (the broadcaster). Its ``mode`` says how it
answers a viewer's requests:

- "honest":  relays the genuine pieces it fetched (a control: a viewer must
  accept it and never ban it);
- "forged":  copies genuine heads and announces haves over the whole window,
  but answers every request with random TS-like data and a random signature;
- "corrupt": relays genuine pieces (sequence, timestamp, signature) with
  bytes flipped in the data;
- "replay":  sends heads that are genuine but old (received at least
  ``replay_age`` seconds earlier) under their old sequence numbers and
  timestamps, again whenever a new head arrives; answers a request with the
  genuine piece only when that piece is that old (else rejects). Haves cover
  the window, so it looks like a peer with everything.
- "silent":  relays genuine heads and announces haves over the whole window,
  but never answers a request (neither piece nor reject).

Every data byte string it sends that is not genuine is remembered:
``bad_samples()`` gives 64-byte pieces of it that no correct viewer output can
contain. Each connection runs a reader thread; everything is bounded in size
and every wait takes a timeout.

Run with /usr/bin/python3 (the same interpreter as the rest of tests/interop).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (needs the path above)
from peers import LOCALHOST, HarnessTimeout, Peer, bdecode, bencode  # noqa: E402

# ------------------------------------------------------------------ codec ----

PROTOCOL = b"BitTorrent protocol"
HANDSHAKE_SIZE = 68
MSG_EXTENDED = 20
EXT_HANDSHAKE = 0
OUR_LIVE_ID = 3          # the extended id our side receives oa_live messages on
OUR_PEX_ID = 1
MAX_PIECE_DATA = 8 * 1024 * 1024
MAX_SIGNATURE = 80
MAX_RANGES = 256
MAX_DESC = 64 * 1024
MAX_CHAT_TEXT = 512
MAX_CHAT_KEY = 1024
MAX_MESSAGE = MAX_PIECE_DATA + 1 + 8 + 8 + 2 + MAX_SIGNATURE + 64

HEAD, HAVE, REQUEST, PIECE, REJECT, DESC_REQUEST, DESC, CHAT = range(8)
TYPE_NAMES = ["head", "have", "request", "piece", "reject", "desc request", "desc", "chat"]


class ProtocolError(ValueError):
    """A malformed message (the connection must be closed)."""


@dataclass
class LiveMsg:
    """One decoded oa_live payload; which fields matter depends on type."""
    type: int
    sequence: int = 0
    timestamp: int = 0
    data_sha256: bytes = b""
    signature: bytes = b""
    data: bytes = b""
    ranges: List[Tuple[int, int]] = field(default_factory=list)
    descriptor: bytes = b""
    chat_key: bytes = b""
    chat_text: bytes = b""

    @property
    def name(self) -> str:
        return TYPE_NAMES[self.type] if 0 <= self.type < len(TYPE_NAMES) else "unknown"


def _check_sig(sig: bytes) -> None:
    if not 1 <= len(sig) <= MAX_SIGNATURE:
        raise ProtocolError(f"signature of {len(sig)} bytes (1..{MAX_SIGNATURE})")


def encode_head(sequence: int, timestamp: int, data_sha256: bytes, signature: bytes) -> bytes:
    _check_sig(signature)
    if len(data_sha256) != 32:
        raise ProtocolError("head: data hash must be 32 bytes")
    return (struct.pack(">BQq", HEAD, sequence, timestamp) + data_sha256
            + struct.pack(">H", len(signature)) + signature)


def encode_have(ranges: Sequence[Tuple[int, int]]) -> bytes:
    _check_ranges(ranges)
    return struct.pack(">BH", HAVE, len(ranges)) + b"".join(
        struct.pack(">QQ", a, b) for a, b in ranges)


def encode_request(sequence: int) -> bytes:
    return struct.pack(">BQ", REQUEST, sequence)


def encode_reject(sequence: int) -> bytes:
    return struct.pack(">BQ", REJECT, sequence)


def encode_piece(sequence: int, timestamp: int, signature: bytes, data: bytes) -> bytes:
    _check_sig(signature)
    if not 1 <= len(data) <= MAX_PIECE_DATA:
        raise ProtocolError(f"piece data of {len(data)} bytes")
    return struct.pack(">BQqH", PIECE, sequence, timestamp, len(signature)) + signature + data


def encode_desc_request() -> bytes:
    return bytes([DESC_REQUEST])


def encode_desc(descriptor: bytes) -> bytes:
    if not 1 <= len(descriptor) <= MAX_DESC:
        raise ProtocolError(f"descriptor of {len(descriptor)} bytes")
    return bytes([DESC]) + descriptor


def encode_chat(key: bytes, timestamp: int, text: bytes, signature: bytes) -> bytes:
    if not 1 <= len(key) <= MAX_CHAT_KEY or not 1 <= len(text) <= MAX_CHAT_TEXT:
        raise ProtocolError("chat: key or text length out of range")
    _check_sig(signature)
    return (struct.pack(">BH", CHAT, len(key)) + key + struct.pack(">qH", timestamp, len(text))
            + text + struct.pack(">H", len(signature)) + signature)


def _check_ranges(ranges: Sequence[Tuple[int, int]]) -> None:
    if not 1 <= len(ranges) <= MAX_RANGES:
        raise ProtocolError(f"have: {len(ranges)} ranges (1..{MAX_RANGES})")
    prev = -1
    for a, b in ranges:
        if a > b or a <= prev:
            raise ProtocolError(f"have: range {a}..{b} out of order")
        prev = b


class _Reader:
    """Bounded cursor over one payload."""

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf, self.pos, self.what = buf, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ProtocolError(f"{self.what}: body too short")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def rest(self) -> bytes:
        out = self.buf[self.pos:]
        self.pos = len(self.buf)
        return out

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(f"{self.what}: {len(self.buf) - self.pos} bytes too many")


def decode_live(payload: bytes) -> LiveMsg:
    """Decodes one oa_live payload (type byte first); ProtocolError when
    malformed. An unknown type decodes as LiveMsg(type=that byte)."""
    if not payload:
        raise ProtocolError("empty oa_live message")
    t = payload[0]
    if t >= len(TYPE_NAMES):
        return LiveMsg(type=t)
    r = _Reader(payload[1:], TYPE_NAMES[t])
    m = LiveMsg(type=t)
    if t == HEAD:
        m.sequence, m.timestamp = r.unpack(">Qq")
        m.data_sha256 = r.take(32)
        m.signature = r.take(r.unpack(">H")[0])
        _check_sig(m.signature)
    elif t == HAVE:
        count = r.unpack(">H")[0]
        if not 1 <= count <= MAX_RANGES:
            raise ProtocolError(f"have: count {count}")
        m.ranges = [r.unpack(">QQ") for _ in range(count)]
        _check_ranges(m.ranges)
    elif t in (REQUEST, REJECT):
        m.sequence = r.unpack(">Q")[0]
    elif t == PIECE:
        m.sequence, m.timestamp, n = r.unpack(">QqH")
        m.signature = r.take(n)
        _check_sig(m.signature)
        m.data = r.rest()
        if not 1 <= len(m.data) <= MAX_PIECE_DATA:
            raise ProtocolError(f"piece: data of {len(m.data)} bytes")
    elif t == DESC:
        m.descriptor = r.rest()
        if not 1 <= len(m.descriptor) <= MAX_DESC:
            raise ProtocolError(f"desc: {len(m.descriptor)} bytes")
    elif t == CHAT:
        m.chat_key = r.take(r.unpack(">H")[0])
        m.timestamp = r.unpack(">q")[0]
        m.chat_text = r.take(r.unpack(">H")[0])
        m.signature = r.take(r.unpack(">H")[0])
        if not 1 <= len(m.chat_key) <= MAX_CHAT_KEY or not 1 <= len(m.chat_text) <= MAX_CHAT_TEXT:
            raise ProtocolError("chat: key or text length out of range")
        _check_sig(m.signature)
    r.end()
    return m


def handshake(info_hash: bytes, peer_id: bytes) -> bytes:
    """The 68 BitTorrent handshake bytes with the BEP 10 bit (reserved[5] 0x10)."""
    reserved = bytearray(8)
    reserved[5] |= 0x10
    return bytes([len(PROTOCOL)]) + PROTOCOL + bytes(reserved) + info_hash + peer_id


def parse_handshake(data: bytes) -> Tuple[bytes, bytes, bytes]:
    """(reserved, info_hash, peer_id) of 68 handshake bytes; ProtocolError if not one."""
    if len(data) != HANDSHAKE_SIZE or data[0] != 19 or data[1:20] != PROTOCOL:
        raise ProtocolError(f"not a BitTorrent handshake: {data[:20]!r}")
    return data[20:28], data[28:48], data[48:68]


def now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------ connection ----

class LiveConn:
    """One live connection after the BitTorrent handshake.

    The reader thread decodes every message and calls on_live(conn, msg) for
    oa_live messages; close() or a remote close ends it (closed is set and
    close_reason says why). send_live is thread-safe.
    """

    def __init__(self, sock: socket.socket, remote_peer_id: bytes, outgoing: bool,
                 on_live: Callable[["LiveConn", LiveMsg], None],
                 on_ext: Callable[["LiveConn"], None]) -> None:
        self.sock = sock
        self.remote_peer_id = remote_peer_id
        self.outgoing = outgoing
        self.addr = sock.getpeername()
        self.remote_ext: Dict[bytes, Any] = {}
        self.remote_live_id: Optional[int] = None
        self.ext_received = threading.Event()
        self.closed = threading.Event()
        self.close_reason = ""
        self.closed_by_remote = False
        self.opened_at = time.monotonic()
        self.closed_at: Optional[float] = None
        self.received: List[LiveMsg] = []   # every oa_live message, pieces without data
        self._on_live, self._on_ext = on_live, on_ext
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LiveConn":
        self._thread.start()
        return self

    def _recv_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("closed by the remote")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _run(self) -> None:
        try:
            while not self.closed.is_set():
                (length,) = struct.unpack(">I", self._recv_exact(4))
                if length == 0:
                    continue  # keep-alive
                if length > MAX_MESSAGE:
                    raise ProtocolError(f"message of {length} bytes")
                body = self._recv_exact(length)
                if body[0] == MSG_EXTENDED and len(body) >= 2:
                    self._extended(body[1], body[2:])
            self._finish("closed here", False)
        except ConnectionError as e:
            self._finish(str(e), not self.closed.is_set())
        except OSError as e:
            self._finish(f"socket error: {e}", not self.closed.is_set())
        except (ProtocolError, ValueError) as e:
            self._finish(f"protocol error: {e}", False)
        except Exception as e:  # a bug in a handler: say so instead of dying quietly
            self._finish(f"handler error: {e!r}", False)

    def _extended(self, ext_id: int, payload: bytes) -> None:
        if ext_id == EXT_HANDSHAKE:
            d = bdecode(payload)
            self.remote_ext = d if isinstance(d, dict) else {}
            m = self.remote_ext.get(b"m", {})
            live_id = m.get(b"oa_live") if isinstance(m, dict) else None
            if not isinstance(live_id, int) or not 0 < live_id < 256:
                raise ProtocolError("not a live peer (no oa_live in the extension handshake)")
            self.remote_live_id = live_id
            self.ext_received.set()
            self._on_ext(self)
        elif ext_id == OUR_LIVE_ID:
            if not self.ext_received.is_set():
                raise ProtocolError("oa_live message before the extension handshake")
            msg = decode_live(payload)
            kept = LiveMsg(**{**msg.__dict__, "data": b""}) if msg.type == PIECE else msg
            kept.data_sha256 = kept.data_sha256 or (hashlib.sha256(msg.data).digest()
                                                    if msg.type == PIECE else b"")
            self.received.append(kept)
            self._on_live(self, msg)

    def _finish(self, reason: str, by_remote: bool) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed_by_remote = by_remote
            self.closed_at = time.monotonic()
            self.closed.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data: bytes) -> bool:
        """Sends bytes; False (and the connection closed) when that fails."""
        with self._send_lock:
            if self.closed.is_set():
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError as e:
                self._finish(f"send failed: {e}", True)
                return False

    def send_ext(self, ext_id: int, payload: bytes) -> bool:
        return self.send_raw(struct.pack(">IBB", len(payload) + 2, MSG_EXTENDED, ext_id) + payload)

    def send_ext_handshake(self, fields: Dict[str, Any]) -> bool:
        d = {"m": {"oa_live": OUR_LIVE_ID, "ut_pex": OUR_PEX_ID}, "v": "openace live_peer.py"}
        d.update(fields)
        return self.send_ext(EXT_HANDSHAKE, bencode(d))

    def send_live(self, payload: bytes) -> bool:
        """Sends one oa_live payload; False before the remote's extension
        handshake (its oa_live id is unknown then) or when the send fails."""
        if self.remote_live_id is None:
            return False
        return self.send_ext(self.remote_live_id, payload)

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._finish("closed here", False)
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)


def open_conn(sock: socket.socket, info_hash: bytes, peer_id: bytes, outgoing: bool,
              on_live: Callable[[LiveConn, LiveMsg], None],
              on_ext: Callable[[LiveConn], None], ext_fields: Dict[str, Any],
              timeout: float = 10.0) -> LiveConn:
    """Does the BitTorrent handshake on a connected socket (initiator sends
    first), sends our extension handshake with ext_fields, then starts the
    reader (so nothing we send can precede our extension handshake).
    Raises ProtocolError/OSError on failure."""
    sock.settimeout(timeout)
    if outgoing:
        sock.sendall(handshake(info_hash, peer_id))
    data = b""
    while len(data) < HANDSHAKE_SIZE:
        chunk = sock.recv(HANDSHAKE_SIZE - len(data))
        if not chunk:
            raise ConnectionError("closed during the BitTorrent handshake")
        data += chunk
    reserved, their_hash, their_id = parse_handshake(data)
    if their_hash != info_hash:
        raise ProtocolError(f"handshake for another swarm: {their_hash.hex()}")
    if not reserved[5] & 0x10:
        raise ProtocolError("remote lacks the BEP 10 bit")
    if not outgoing:
        sock.sendall(handshake(info_hash, peer_id))
    sock.settimeout(None)
    conn = LiveConn(sock, their_id, outgoing, on_live, on_ext)
    conn.send_ext_handshake(ext_fields)
    return conn.start()


# ------------------------------------------------------------------ peer ----

@dataclass
class Piece:
    sequence: int
    timestamp: int
    signature: bytes
    data: bytes
    received: float  # time.monotonic() when it arrived


@dataclass
class Head:
    sequence: int
    timestamp: int
    data_sha256: bytes
    signature: bytes
    received: float


MODES = ("honest", "forged", "corrupt", "replay", "silent")


class LivePeer:
    """A live peer on 127.0.0.1 that answers viewers as its mode says.

    content_id: 40 hex. upstream: the broadcaster (or any live peer) to take
    genuine heads, pieces and the descriptor from. window: the
    oa_live_window it announces (pieces). replay_age: how old (seconds since
    it was received) a head or piece must be before mode "replay" sends it.
    Use as a context manager or call close().
    """

    def __init__(self, content_id: str, mode: str = "honest", upstream: Optional[Peer] = None,
                 window: int = 120, replay_age: float = 12.0, seed: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.content_id = bytes.fromhex(content_id)
        self.mode = mode
        self.window = window
        self.replay_age = replay_age
        self.peer_id = b"-PY0001-" + hashlib.sha256(f"{mode}{seed}{os.getpid()}".encode()).digest()[:12]
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self.heads: Dict[int, Head] = {}
        self.pieces: Dict[int, Piece] = {}
        self.descriptor: Optional[bytes] = None
        self.upstream_conn: Optional[LiveConn] = None
        self.downstream: List[LiveConn] = []
        self.bad_data: List[bytes] = []      # data bytes sent that are not genuine
        self._bad_samples: List[bytes] = []  # 64-byte samples of them
        self.requests_received = 0
        self._requested: set = set()
        self.pieces_sent = 0
        self.heads_sent = 0
        self.rejects_sent = 0
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOCALHOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()
        if upstream is not None:
            self.connect_upstream(upstream)

    @property
    def peer(self) -> Peer:
        return (LOCALHOST, self.port)

    # -- upstream: where genuine data comes from

    def connect_upstream(self, addr: Peer, timeout: float = 10.0) -> LiveConn:
        """Dials addr and starts taking its heads, pieces and descriptor."""
        sock = socket.create_connection(addr, timeout=timeout)
        try:
            conn = open_conn(sock, self.content_id, self.peer_id, True, self._on_upstream_live,
                             self._on_upstream_ext, {"oa_live_window": self.window, "p": self.port},
                             timeout)
        except BaseException:
            sock.close()
            raise
        self.upstream_conn = conn
        return conn

    def _on_upstream_ext(self, conn: LiveConn) -> None:
        if self.descriptor is None:
            conn.send_live(encode_desc_request())

    def _wants_pieces(self) -> bool:
        return self.mode in ("honest", "corrupt", "replay")

    def _on_upstream_live(self, conn: LiveConn, m: LiveMsg) -> None:
        now = time.monotonic()
        if m.type == HEAD:
            with self._lock:
                fresh = m.sequence not in self.heads
                self.heads[m.sequence] = Head(m.sequence, m.timestamp, m.data_sha256, m.signature, now)
                self._forget_old()
            if fresh and self._wants_pieces():
                self._request_upstream(conn, m.sequence)
            if fresh:
                self._announce_head(m.sequence)
        elif m.type == HAVE and self._wants_pieces():
            with self._lock:
                top = max(self.heads) if self.heads else None
            # Only the few newest: older ones would be outside a viewer's interest anyway.
            for a, b in m.ranges:
                for seq in range(max(a, b - 3), b + 1):
                    if top is not None and seq <= top:
                        self._request_upstream(conn, seq)
        elif m.type == PIECE:
            with self._lock:
                self.pieces[m.sequence] = Piece(m.sequence, m.timestamp, m.signature, m.data, now)
                self._forget_old()
            self._announce_piece(m.sequence)
        elif m.type == REJECT:
            with self._lock:
                self._requested.discard(m.sequence)
        elif m.type == DESC:
            with self._lock:
                if hashlib.sha1(m.descriptor).digest() == self.content_id:
                    self.descriptor = m.descriptor
                else:
                    self.errors.append("upstream descriptor does not match the content id")

    def _request_upstream(self, conn: LiveConn, seq: int) -> None:
        with self._lock:
            if seq in self._requested or seq in self.pieces:
                return
            self._requested.add(seq)
        conn.send_live(encode_request(seq))

    def _forget_old(self) -> None:
        keep = max(self.window, 64)
        for table in (self.pieces, self.heads):
            while len(table) > keep:
                del table[min(table)]

    # -- downstream: the viewers we serve (or attack)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                conn = open_conn(sock, self.content_id, self.peer_id, False, self._on_down_live,
                                 self._on_down_ext, self._down_ext_fields())
            except (OSError, ProtocolError) as e:
                self.errors.append(f"incoming handshake failed: {e}")
                sock.close()
                continue
            self._add_downstream(conn)

    def dial(self, addr: Peer, timeout: float = 5.0) -> LiveConn:
        """Connects to a viewer and serves it like an incoming one. A banned
        peer sees the returned connection close (see its close_reason);
        raises OSError/ProtocolError when the handshake itself fails."""
        sock = socket.create_connection(addr, timeout=timeout)
        try:
            conn = open_conn(sock, self.content_id, self.peer_id, True, self._on_down_live,
                             self._on_down_ext, self._down_ext_fields(), timeout)
        except BaseException:
            sock.close()
            raise
        self._add_downstream(conn)
        return conn

    def _add_downstream(self, conn: LiveConn) -> None:
        with self._lock:
            self.downstream.append(conn)

    def _down_ext_fields(self) -> Dict[str, Any]:
        with self._lock:
            newest = max(self.heads) if self.heads else None
            desc_len = len(self.descriptor) if self.descriptor else None
        fields: Dict[str, Any] = {"oa_live_window": self.window, "p": self.port}
        if newest is not None:
            fields["oa_live_newest"] = newest
        if desc_len:
            fields["oa_live_desc"] = desc_len
        return fields

    def _on_down_ext(self, conn: LiveConn) -> None:
        head = self.head_to_send()
        if head is not None:
            self._send_head(conn, head)
        ranges = self._have_ranges()
        if ranges:
            conn.send_live(encode_have(ranges))

    def head_to_send(self) -> Optional[Head]:
        """The head this peer announces now: the newest genuine one, or for
        "replay" the newest that is at least replay_age old (None: none yet)."""
        with self._lock:
            if self.mode == "replay":
                old = [h for h in self.heads.values()
                       if time.monotonic() - h.received >= self.replay_age]
                return max(old, key=lambda h: h.sequence) if old else None
            return self.heads[max(self.heads)] if self.heads else None

    def _have_ranges(self) -> List[Tuple[int, int]]:
        with self._lock:
            if not self.heads:
                return []
            top = max(self.heads)
            if self.mode in ("forged", "replay", "silent"):
                return [(max(0, top - self.window + 1), top)]
            return _ranges(sorted(self.pieces))

    def _announce_head(self, seq: int) -> None:
        if self.mode == "replay":
            head = self.head_to_send()
        else:
            with self._lock:
                head = self.heads.get(seq)
        if head is None:
            return
        have = encode_have([(seq, seq)]) if self.mode in ("forged", "replay", "silent") else None
        for conn in self._open_downstream():
            self._send_head(conn, head)
            if have:
                conn.send_live(have)

    def _send_head(self, conn: LiveConn, head: Head) -> None:
        if conn.send_live(encode_head(head.sequence, head.timestamp, head.data_sha256,
                                      head.signature)):
            with self._lock:
                self.heads_sent += 1

    def _announce_piece(self, seq: int) -> None:
        if self.mode in ("honest", "corrupt"):
            for conn in self._open_downstream():
                conn.send_live(encode_have([(seq, seq)]))

    def _open_downstream(self) -> List[LiveConn]:
        with self._lock:
            return [c for c in self.downstream if not c.closed.is_set() and c.ext_received.is_set()]

    def _on_down_live(self, conn: LiveConn, m: LiveMsg) -> None:
        if m.type == REQUEST:
            with self._lock:
                self.requests_received += 1
            if self.mode != "silent":
                conn.send_live(self._answer(m.sequence))
        elif m.type == DESC_REQUEST:
            with self._lock:
                desc = self.descriptor
            if desc:
                conn.send_live(encode_desc(desc))

    def _answer(self, seq: int) -> bytes:
        """The piece (or reject) this mode sends for a request of seq."""
        with self._lock:
            genuine = self.pieces.get(seq)
            head = self.heads.get(seq)
            if self.mode == "honest" and genuine:
                return self._piece(genuine.sequence, genuine.timestamp, genuine.signature,
                                   genuine.data)
            if self.mode == "corrupt" and genuine:
                data = self._corrupt(genuine.data)
                return self._piece(seq, genuine.timestamp, genuine.signature, data)
            if self.mode == "forged":
                size = len(genuine.data) if genuine else 188 * self._rng.randint(200, 600)
                data = self._forge(size)
                ts = head.timestamp if head else now_ms()
                sig = b"\x30\x45" + self._rng.randbytes(69)
                return self._piece(seq, ts, sig, data)
            if self.mode == "replay" and genuine and \
                    time.monotonic() - genuine.received >= self.replay_age:
                # Genuine, asked for, but old: only its timestamp gives it away.
                return self._piece(genuine.sequence, genuine.timestamp, genuine.signature,
                                   genuine.data)
            self.rejects_sent += 1
            return encode_reject(seq)

    def _piece(self, seq: int, ts: int, sig: bytes, data: bytes) -> bytes:
        self.pieces_sent += 1
        return encode_piece(seq, ts, sig, data)

    def _forge(self, size: int) -> bytes:
        """Random data shaped like MPEG-TS (a 0x47 sync byte every 188)."""
        buf = bytearray(self._rng.randbytes(size))
        buf[::188] = b"\x47" * len(buf[::188])
        data = bytes(buf)
        self.bad_data.append(data)
        self._bad_samples += [data[i:i + 64] for i in range(1, max(2, size - 64), 1021)][:64]
        return data

    def _corrupt(self, data: bytes) -> bytes:
        """data with one byte flipped every ~4 KiB (never a sync byte)."""
        buf = bytearray(data)
        positions = [p for p in range(100, len(buf), 4093) if p % 188]
        if not positions:
            positions = [len(buf) // 2 if (len(buf) // 2) % 188 else len(buf) // 2 + 1]
            positions = [p for p in positions if p < len(buf)]
        for p in positions:
            buf[p] ^= 0xFF
        out = bytes(buf)
        self.bad_data.append(out)
        for p in positions:
            lo = max(0, min(p - 32, len(out) - 64))
            self._bad_samples.append(out[lo:lo + 64])
        return out

    # -- for tests

    def publish(self, sequence: int, timestamp: int, data: bytes, signature: bytes) -> None:
        """Holds a piece as if it came from upstream (its head included) and
        announces it: makes this peer a tiny source for codec self-tests."""
        now = time.monotonic()
        with self._lock:
            self.heads[sequence] = Head(sequence, timestamp, hashlib.sha256(data).digest(),
                                        signature, now)
            self.pieces[sequence] = Piece(sequence, timestamp, signature, data, now)
        self._announce_head(sequence)
        self._announce_piece(sequence)

    def bad_samples(self) -> List[bytes]:
        """64-byte samples of every non-genuine data byte string sent (each
        contains at least one byte no genuine piece has there)."""
        with self._lock:
            return [s for s in self._bad_samples if len(s) == 64]

    def wait_upstream(self, pred: Callable[["LivePeer"], Any], timeout: float, what: str) -> Any:
        return peers.wait_until(lambda: pred(self), timeout, what, details=self.describe)

    def describe(self) -> str:
        with self._lock:
            down = [f"{c.addr} open={not c.closed.is_set()} reason={c.close_reason!r} "
                    f"msgs={len(c.received)}" for c in self.downstream]
            up = self.upstream_conn
            return (f"LivePeer mode={self.mode} port={self.port} heads={len(self.heads)} "
                    f"pieces={len(self.pieces)} desc={self.descriptor is not None} "
                    f"requests={self.requests_received} sent={self.pieces_sent} "
                    f"heads_sent={self.heads_sent} "
                    f"rejects={self.rejects_sent} upstream="
                    f"{None if up is None else (not up.closed.is_set(), up.close_reason)} "
                    f"downstream={down} errors={self.errors[-5:]}")

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self.downstream) + ([self.upstream_conn] if self.upstream_conn else [])
        for c in conns:
            c.close()
        for t in self._threads:
            t.join(2.0)

    def __enter__(self) -> "LivePeer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ranges(seqs: Sequence[int]) -> List[Tuple[int, int]]:
    """Sorted sequence numbers as at most MAX_RANGES inclusive ranges (newest kept)."""
    out: List[Tuple[int, int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out[-MAX_RANGES:]


def wait_closed(conn: LiveConn, timeout: float) -> bool:
    """True when conn closes within timeout."""
    return conn.closed.wait(timeout)


__all__ = ["LivePeer", "LiveConn", "LiveMsg", "ProtocolError", "decode_live", "encode_head",
           "encode_have", "encode_request", "encode_reject", "encode_piece",
           "encode_desc_request", "encode_desc", "encode_chat", "handshake", "parse_handshake",
           "open_conn", "wait_closed", "HarnessTimeout", "MODES"]
