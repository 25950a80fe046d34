"""Live broadcasts between OpenAce processes, and against a hostile peer.

`openace broadcast` and live `openace play` run as real processes on
127.0.0.1 (live_swarm.py); live_peer.py is an oa_live peer written here in
Python from docs/protocol.md alone, honest or malicious. The swarm tests skip
when the openace binary ($OPENACE_CLI, else build/openace) has no
`broadcast` subcommand; the codec tests at the top always run.

    OPENACE_CLI=$PWD/build/openace \\
        /usr/bin/python3 -m pytest -x -q tests/interop/test_live_interop.py

What the swarm tests prove:
- eight viewers, found through the broadcaster's embedded tracker only, all
  write a stream ffprobe decodes without error, the same bytes, most of it
  from each other; SIGINT ends each with exit status 0;
- a 5-hop chain without tracker or PEX: the last viewer plays bytes that only
  relays gave it (none from the broadcaster), identical to the first's;
- a forging, corrupting or replaying peer is banned (progress `bans`, and a
  redial with its peer id is refused) while the viewer plays on, and no byte
  it forged or corrupted reaches the output; the honest Python peer (the
  control) is used and never banned, so the bans are about the data;
- a peer that never answers is routed around without skips; malformed
  oa_live messages and BitTorrent piece traffic close the connection, an
  unknown oa_live type does not;
- a broadcaster restarted on its --state-dir keeps its content id, continues
  with higher sequence numbers, and a viewer that stayed (while another was
  killed and a new one joined) plays the second run;
- a viewer joining a broadcast in its first seconds starts at its first
  piece (no phantom skips, no skip_after wait).

Every test is bounded: each wait has a timeout, and an alarm fails a test
that runs past TEST_LIMIT seconds. The whole file takes about 2.5 minutes.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import live_peer as lp
import peers
from live_swarm import (FFPROBE, LAVFI_SOURCE, LiveBroadcast, LiveViewer, contains_any,
                        ffprobe_ok, make_ts_file, stop_all)

TEST_LIMIT = 90  # seconds, per test

live_cli = peers.requires("openace broadcast")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe is not installed")



def assert_plays(viewer: LiveViewer) -> None:
    ok, errors = ffprobe_ok(viewer.output_path)
    assert ok, f"{viewer.output_path}: {errors[:10]}\n{viewer.output()}"


def middle_samples(path: Path, count: int = 4, size: int = 4096) -> List[bytes]:
    """count byte strings of size from the middle half of a file."""
    data = path.read_bytes()
    lo, hi = len(data) // 4, 3 * len(data) // 4 - size
    assert hi > lo, f"{path} is too short ({len(data)} bytes)"
    return [data[lo + i * (hi - lo) // max(1, count - 1):][:size] for i in range(count)]


def assert_same_stream(reference: LiveViewer, others: List[LiveViewer]) -> None:
    """Every other output holds the reference's middle bytes: all viewers
    wrote the same pieces (each checked against the broadcaster's key)."""
    samples = middle_samples(reference.output_path)
    for v in others:
        data = v.output_path.read_bytes()
        missing = sum(sm not in data for sm in samples)
        assert not missing, f"{v.output_path} lacks {missing} of {len(samples)} samples " \
            f"of {reference.output_path}"


def summary(viewer: LiveViewer) -> str:
    p = viewer.progress()
    keys = ("state", "peers", "pieces_written", "pieces_skipped", "pieces_late", "bytes_written",
            "bytes_from_source", "bytes_from_peers", "bans", "startup_s", "lag_p50_s")
    return " ".join(f"{k}={p.get(k)}" for k in keys)


# ------------------------------------------------------- codec self-tests ----

def test_live_codec_round_trips_every_message() -> None:
    sig = bytes(range(1, 72))
    h = lp.decode_live(lp.encode_head(2**63 + 5, -7, b"\x11" * 32, sig))
    assert (h.name, h.sequence, h.timestamp, h.data_sha256, h.signature) == (
        "head", 2**63 + 5, -7, b"\x11" * 32, sig)
    ranges = [(1, 1), (3, 9), (2**64 - 2, 2**64 - 1)]
    assert lp.decode_live(lp.encode_have(ranges)).ranges == ranges
    assert lp.decode_live(lp.encode_request(42)).sequence == 42
    assert lp.decode_live(lp.encode_reject(43)).name == "reject"
    data = bytes(188 * 3)
    p = lp.decode_live(lp.encode_piece(7, 1_700_000_000_000, sig, data))
    assert (p.sequence, p.timestamp, p.signature, p.data) == (7, 1_700_000_000_000, sig, data)
    assert lp.decode_live(lp.encode_desc_request()).name == "desc request"
    assert lp.decode_live(lp.encode_desc(b"d4:name1:xe")).descriptor == b"d4:name1:xe"
    c = lp.decode_live(lp.encode_chat(b"K" * 91, 99, "hé".encode(), sig))
    assert (c.chat_key, c.timestamp, c.chat_text, c.signature) == (b"K" * 91, 99, "hé".encode(), sig)
    assert lp.decode_live(b"\x09anything").name == "unknown"
    # The wire layout itself, byte by byte (docs/protocol.md §3).
    assert lp.encode_request(1) == b"\x02" + struct.pack(">Q", 1)
    assert lp.encode_have([(5, 6)]) == b"\x01\x00\x01" + struct.pack(">QQ", 5, 6)
    hs = lp.handshake(b"\xaa" * 20, b"\xbb" * 20)
    assert len(hs) == 68 and hs[25] & 0x10 and lp.parse_handshake(hs)[1] == b"\xaa" * 20


@pytest.mark.parametrize("payload, why", [
    (b"", "empty"),
    (b"\x02" + b"\x00" * 7, "request too short"),
    (b"\x02" + b"\x00" * 9, "request too long"),
    (b"\x01\x00\x00", "have with no range"),
    (b"\x01\x00\x02" + struct.pack(">QQQQ", 5, 6, 6, 7), "overlapping ranges"),
    (b"\x01\x00\x01" + struct.pack(">QQ", 9, 8), "reversed range"),
    (b"\x03" + struct.pack(">QqH", 1, 1, 0) + b"x", "piece without signature"),
    (b"\x03" + struct.pack(">QqH", 1, 1, 81) + b"s" * 81 + b"x", "signature over 80 bytes"),
    (b"\x03" + struct.pack(">QqH", 1, 1, 3) + b"sig", "piece without data"),
    (b"\x06", "empty descriptor"),
    (b"\x00" + struct.pack(">Qq", 1, 1) + b"h" * 32 + b"\x00\x02s", "head signature cut short"),
])
def test_live_codec_refuses_malformed(payload: bytes, why: str) -> None:
    with pytest.raises(lp.ProtocolError):
        lp.decode_live(payload)


def test_live_codec_survives_mutations() -> None:
    """Mutated valid messages decode or raise ProtocolError, nothing else."""
    rng = random.Random(7)
    seeds = [lp.encode_head(1, 2, b"h" * 32, b"s" * 70), lp.encode_have([(1, 4), (8, 9)]),
             lp.encode_piece(3, 4, b"s" * 70, b"\x47" * 376), lp.encode_request(5),
             lp.encode_chat(b"k" * 10, 5, b"hi", b"s" * 8), lp.encode_desc(b"d1:ai1ee")]
    decoded = 0
    for _ in range(3000):
        m = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            if op == 0 and m:
                m[rng.randrange(len(m))] = rng.randrange(256)
            elif op == 1 and m:
                del m[rng.randrange(len(m)):]
            else:
                m.insert(rng.randrange(len(m) + 1), rng.randrange(256))
        try:
            lp.decode_live(bytes(m))
            decoded += 1
        except lp.ProtocolError:
            pass
    assert 0 < decoded < 3000


def _python_source(desc: bytes) -> lp.LivePeer:
    """An honest LivePeer holding the descriptor: the source of the self-tests."""
    src = lp.LivePeer(hashlib.sha1(desc).hexdigest(), "honest")
    src.descriptor = desc
    return src


def test_live_peers_talk_to_each_other_over_tcp() -> None:
    desc = b"d4:name4:teste"
    cid = hashlib.sha1(desc).hexdigest()
    with _python_source(desc) as src:
        for seq in range(100, 104):
            src.publish(seq, lp.now_ms(), bytes([seq]) * 188 * 4, b"sig%d" % seq)
        with lp.LivePeer(cid, "honest", upstream=src.peer) as relay:
            relay.wait_upstream(lambda p: len(p.pieces) == 4 and p.descriptor == desc, 10,
                                "the relay to fetch 4 pieces and the descriptor")
            got = {s: p.data for s, p in relay.pieces.items()}
            assert got == {s: bytes([s]) * 188 * 4 for s in range(100, 104)}
            src.publish(104, lp.now_ms(), b"\x47" * 188, b"sig104")
            relay.wait_upstream(lambda p: 104 in p.pieces, 10, "piece 104 to be relayed")
            assert relay.pieces[104].signature == b"sig104"
        assert src.requests_received == 5 and src.pieces_sent == 5


@pytest.mark.parametrize("mode", ["forged", "corrupt", "replay"])
def test_malicious_modes_send_what_they_claim(mode: str) -> None:
    """A Python viewer behind a malicious LivePeer receives exactly the
    non-genuine data the peer says it sent (forged, corrupt) or genuine old
    pieces (replay)."""
    desc = b"d4:name4:teste"
    cid = hashlib.sha1(desc).hexdigest()
    genuine = {s: random.Random(s).randbytes(188 * 40) for s in range(10, 16)}
    with _python_source(desc) as src, \
            lp.LivePeer(cid, mode, upstream=src.peer, replay_age=0.3) as bad:
        peers.wait_until(lambda: src._open_downstream(), 5, "the source's first peer")
        for s, data in genuine.items():
            src.publish(s, lp.now_ms(), data, b"sig%d" % s)
        if mode != "forged":
            bad.wait_upstream(lambda p: len(p.pieces) == 6, 10, "6 genuine pieces")
        else:
            bad.wait_upstream(lambda p: len(p.heads) == 6, 10, "6 heads")
        time.sleep(0.35)  # replay: what it holds is now old enough
        got: List[lp.LiveMsg] = []
        viewer = lp.LivePeer(cid, "honest")
        try:
            conn = bad.dial(viewer.peer)  # the viewer side receives; the bad peer serves
            assert conn.ext_received.wait(5)
            peers.wait_until(lambda: any(c.ext_received.is_set() for c in viewer.downstream),
                             5, "the viewer side's handshake")
            down = viewer.downstream[0]
            assert down.send_live(lp.encode_request(13))
            peers.wait_until(lambda: any(m.type == lp.PIECE for m in down.received), 5,
                             "a piece answer", details=bad.describe)
            got = [m for m in down.received if m.type in (lp.PIECE, lp.HEAD)]
        finally:
            viewer.close()
        pieces = [m for m in got if m.type == lp.PIECE]
        heads = [m for m in got if m.type == lp.HEAD]
        if mode == "replay":
            assert pieces[0].sequence == 13 and heads and heads[0].sequence == 15
            assert pieces[0].data_sha256 == hashlib.sha256(genuine[13]).digest()
            assert bad.bad_samples() == []
        else:
            assert pieces[0].sequence == 13 and heads and heads[0].sequence == 15
            bad_hashes = {hashlib.sha256(d).digest() for d in bad.bad_data}
            assert pieces[0].data_sha256 in bad_hashes
            assert pieces[0].data_sha256 != hashlib.sha256(genuine[13]).digest()
            samples = bad.bad_samples()
            assert samples and not any(s in b"".join(genuine.values()) for s in samples)


# ------------------------------------------------------- against openace ----

def _viewer(tmp_path: Path, name: str, cid: str, **kw: Any) -> LiveViewer:
    return LiveViewer(cid, workdir=tmp_path / name, **kw)


@live_cli
@needs_ffprobe
def test_broadcaster_and_eight_viewers_share_the_stream(tmp_path: Path) -> None:
    """8 viewers that find each other through the broadcaster's embedded
    tracker all play a valid stream, and most get most bytes from peers."""
    viewers: List[LiveViewer] = []
    with LiveBroadcast(embedded_tracker=True, workdir=tmp_path / "b") as b:
        try:
            for i in range(8):
                viewers.append(_viewer(tmp_path, f"v{i}", b.content_id,
                                       trackers=[b.tracker_url]))
                time.sleep(0.3)
            for v in viewers:
                v.wait_playing(30, pieces=2)
            time.sleep(20)
            stats = [v.progress() for v in viewers]
            for v in viewers:
                assert v.running(), v.output()
            codes = stop_all(viewers)
            assert codes == [0] * 8, f"exit statuses after SIGINT: {codes}"
        finally:
            stop_all(viewers)
        lines = "\n".join(f"v{i}: {summary(v)}" for i, v in enumerate(viewers))
        print(lines)
        for v in viewers:
            assert_plays(v)
        assert_same_stream(viewers[-1], viewers[:-1])
        from_peers = [s for s in stats if (s.get("bytes_from_peers") or 0)
                      > (s.get("bytes_from_source") or 0)]
        assert len(from_peers) >= 5, f"too few viewers fed mostly by peers:\n{lines}"
        assert (b.progress().get("uploaded") or 0) > 0
        for s in stats:
            assert (s.get("bans") or 0) == 0, lines


@live_cli
@needs_ffprobe
def test_five_hop_chain_relays_to_the_last_viewer(tmp_path: Path) -> None:
    """broadcaster <- v1 <- v2 <- v3 <- v4 <- v5, no tracker, no PEX: the
    5th viewer plays pieces that only came through four relays. v1 starts
    from the saved .acelive descriptor, the others from the link."""
    no_pex = {"transport.pex": "false"}
    chain: List[LiveViewer] = []
    acelive = tmp_path / "chain.acelive"
    with LiveBroadcast(workdir=tmp_path / "b", sets=no_pex, save=acelive) as b:
        b.wait_progress(lambda p: p.get("descriptor") == str(acelive), 10, "the saved .acelive")
        assert hashlib.sha1(acelive.read_bytes()).hexdigest() == b.content_id
        try:
            upstream = b.peer
            for i in range(5):
                source = str(acelive) if i == 0 else b.content_id
                v = _viewer(tmp_path, f"v{i + 1}", source, peers_=[upstream], sets=no_pex)
                chain.append(v)
                upstream = v.peer
            last = chain[-1]
            last.wait_playing(40, pieces=8)
            end = last.progress()
        finally:
            stop_all(chain)
        lines = "\n".join(f"v{i + 1}: {summary(v)}" for i, v in enumerate(chain))
        print(lines)
        assert_plays(last)
        assert_same_stream(last, chain[:-1])
        assert (end.get("bytes_from_source") or 0) == 0, lines
        assert (end.get("bytes_from_peers") or 0) > 0, lines


REPLAY_KEYFRAME_S = 3.0   # pieces of 3 s of media under a declared 1 s piece duration
REPLAY_WINDOW_S = 10.0    # the viewer's window: 10 pieces, 10 s of wall clock
REPLAY_AGE_S = 11.5       # older than the window in time, ~4 pieces behind in sequence


@live_cli
@needs_ffprobe
@pytest.mark.parametrize("mode", ["forged", "corrupt", "replay", "honest"])
def test_viewer_against_a_malicious_peer(tmp_path: Path, mode: str) -> None:
    """A viewer that knows the broadcaster and a Python peer: a forging,
    corrupting or replaying peer is banned and none of its bytes reach the
    output; an honest Python peer (the control) serves pieces unbanned."""
    viewer_sets: Dict[str, Any] = {"transport.pex": "false"}
    if mode == "replay":
        # Sequence numbers advance once per 3 s keyframe while the window
        # counts 1 s pieces, so a replayed head can be inside the viewer's
        # sequence window yet older than its time window: "too old".
        source = str(make_ts_file(tmp_path / "gop3.ts", seconds=30,
                                  keyframe_s=REPLAY_KEYFRAME_S))
        viewer_sets.update({"live.window_seconds": REPLAY_WINDOW_S, "live.join_delay": 1})
        bcast = LiveBroadcast(source, loop=True, piece_duration=1, workdir=tmp_path / "b")
    else:
        bcast = LiveBroadcast(LAVFI_SOURCE, workdir=tmp_path / "b")
    viewer = None
    with bcast as b, lp.LivePeer(b.content_id, mode, upstream=b.peer,
                                 replay_age=REPLAY_AGE_S) as bad:
        try:
            if mode == "replay":
                bad.wait_upstream(lambda p: p.head_to_send() is not None and p.descriptor, 25,
                                  f"a head {REPLAY_AGE_S} s old")
            else:
                bad.wait_upstream(lambda p: p.heads and p.descriptor
                                  and (mode == "forged" or p.pieces), 15, "genuine data")
            viewer = _viewer(tmp_path, "v", b.content_id, peers_=[b.peer, bad.peer],
                             sets=viewer_sets)
            viewer.wait_playing(30, pieces=2)
            if mode == "honest":
                peers.wait_until(lambda: bad.pieces_sent >= 2, 20, "the viewer to use the "
                                 "honest Python peer", details=lambda: bad.describe()
                                 + "\n" + summary(viewer))
                viewer.wait_playing(20, pieces=6)
            else:
                viewer.wait_progress(lambda p: (p.get("bans") or 0) >= 1, 20, "a ban")
                start = viewer.stat("pieces_written")
                viewer.wait_playing(20, pieces=start + 3)
            end = viewer.progress()
            refused = None
            if mode != "honest":
                conns = list(bad.downstream)
                assert conns and all(c.closed.wait(5) for c in conns), bad.describe()
                refused = _redial_refused(bad, viewer)
        finally:
            if viewer is not None:
                viewer.stop()
        detail = (f"{summary(viewer)}\n{bad.describe()}\nviewer bans: "
                  f"{viewer.log_lines('banned')[-5:]}")
        print(f"{mode}: {detail}\nredial: {refused}")
        assert_plays(viewer)
        if mode == "honest":
            assert (end.get("bans") or 0) == 0, detail
            return
        assert (end.get("bans") or 0) >= 1, detail
        assert refused, f"the banned peer could connect again: {refused}\n{detail}"
        if mode == "replay":
            assert bad.heads_sent >= 1, detail  # it did send its old genuine heads
        else:
            assert bad.pieces_sent >= 1, detail
            samples = bad.bad_samples()
            assert samples, detail
            leaked = contains_any(viewer.output_path, samples)
            assert not leaked, f"{len(leaked)} of {len(samples)} bad samples in the output"


@live_cli
@needs_ffprobe
def test_viewer_routes_around_a_peer_that_never_answers(tmp_path: Path) -> None:
    """A peer that announces every piece but answers no request (no piece,
    no reject) delays nothing for long: its requests go to the broadcaster
    after their deadline, and the viewer plays on without skipping."""
    with LiveBroadcast(workdir=tmp_path / "b") as b, \
            lp.LivePeer(b.content_id, "silent", upstream=b.peer) as silent:
        silent.wait_upstream(lambda p: p.heads and p.descriptor, 15, "genuine heads")
        with _viewer(tmp_path, "v", b.content_id, peers_=[b.peer, silent.peer],
                     sets={"transport.pex": "false"}) as v:
            start = v.wait_playing(30, pieces=2)
            time.sleep(10)
            end = v.progress()
            detail = f"{summary(v)}\n{silent.describe()}"
            print(detail)
            assert silent.requests_received >= 1, detail  # it was asked, and stayed silent
            assert end["pieces_written"] - start["pieces_written"] >= 7, detail
            assert end["pieces_skipped"] == start["pieces_skipped"], detail
    assert_plays(v)


def _redial_refused(bad: lp.LivePeer, viewer: LiveViewer) -> Any:
    """Dials the viewer as the banned peer (same peer id, new source port):
    truthy when the viewer refuses it, i.e. closes the connection before its
    extension handshake; None when it accepts the peer again."""
    try:
        conn = bad.dial(viewer.peer)
    except (OSError, lp.ProtocolError) as e:
        return f"refused at the BitTorrent handshake: {e!r}"
    if conn.closed.wait(5) and not conn.ext_received.is_set():
        return f"closed before the extension handshake: {conn.close_reason}"
    conn.close()
    return None


@live_cli
@needs_ffprobe
def test_broadcaster_restart_and_viewer_churn(tmp_path: Path) -> None:
    """A broadcaster restarted on the same --state-dir (and port) keeps its
    content id and continues with higher sequence numbers; a viewer that
    stays on writes pieces of the second run, through other viewers leaving
    (SIGKILL) and joining."""
    state = tmp_path / "bstate"
    port = peers.free_port()
    a = c = d = b2 = None
    b1 = LiveBroadcast(workdir=tmp_path / "b1", state_dir=state, listen_port=port)
    try:
        cid = b1.content_id
        a = _viewer(tmp_path, "a", cid, peers_=[b1.peer])
        c = _viewer(tmp_path, "c", cid, peers_=[b1.peer, a.peer])
        a.wait_playing(30, pieces=3)
        c.wait_playing(30, pieces=2)
        c.kill()  # a viewer vanishes without goodbye
        d = _viewer(tmp_path, "d", cid, peers_=[b1.peer, a.peer])
        d.wait_playing(30, pieces=2)
        assert b1.stop() == 0, b1.output()
        last1 = max(b1.progress().get("newest") or 0, a.progress().get("newest") or 0)
        b2 = LiveBroadcast(workdir=tmp_path / "b2", state_dir=state, listen_port=port)
        assert b2.content_id == cid
        first2 = b2.wait_pieces(1, 15)["newest"]
        assert first2 > last1, f"the restart reused sequence numbers: {first2} <= {last1}"
        entered = a.wait_progress(lambda p: (p.get("position") or 0) >= first2, 30,
                                  f"a to reach the second run (sequence {first2})")
        a.wait_progress(lambda p: p["pieces_written"] >= entered["pieces_written"] + 3, 20,
                        "a to write 3 pieces of the second run")
        d.wait_progress(lambda p: (p.get("position") or 0) >= first2 + 1, 20,
                        "d to reach the second run")
        end = a.progress()
        print(f"first run ended at {last1}, second began at {first2}\n"
              f"a: {summary(a)}\nd: {summary(d)}")
    finally:
        stop_all([x for x in (a, c, d, b2, b1) if x is not None])
    assert_plays(a)
    assert_plays(d)
    assert (end.get("bans") or 0) == 0, summary(a)


MALFORMED = [
    ("have ranges out of order", 20, b"\x01\x00\x02" + struct.pack(">QQQQ", 5, 6, 3, 4)),
    ("have with count 0", 20, b"\x01\x00\x00"),
    ("request cut short", 20, b"\x02\x00\x01"),
    ("piece with an empty signature", 20, b"\x03" + struct.pack(">QqH", 1, 1, 0) + b"\x47" * 188),
    ("head whose signature runs past the end", 20,
     b"\x00" + struct.pack(">Qq", 1, 1) + b"h" * 32 + b"\x00\x50" + b"s" * 10),
    ("a BitTorrent bitfield", 5, b"\xff"),
    ("a BitTorrent request", 6, struct.pack(">III", 0, 0, 16384)),
]


@live_cli
@needs_ffprobe
def test_viewer_closes_peers_that_break_the_wire_format(tmp_path: Path) -> None:
    """Malformed oa_live messages and BitTorrent piece traffic close the
    connection (docs/protocol.md §1, §3), an unknown oa_live type is ignored,
    and the viewer plays on through all of it."""
    with LiveBroadcast(workdir=tmp_path / "b", sets={"transport.pex": "false"}) as b, \
            _viewer(tmp_path, "v", b.content_id, peers_=[b.peer],
                    sets={"transport.pex": "false"}) as v:
        v.wait_playing(30, pieces=1)
        kept_open = []
        for i, (what, msg_id, payload) in enumerate([("unknown type 9", 20, b"\x09abc")]
                                                    + MALFORMED):
            with lp.LivePeer(b.content_id, "honest", seed=100 + i) as bad:
                conn = bad.dial(v.peer)
                assert conn.ext_received.wait(5), f"{what}: no extension handshake"
                if msg_id == 20:
                    conn.send_live(payload)
                else:
                    conn.send_raw(struct.pack(">IB", len(payload) + 1, msg_id) + payload)
                closed = conn.closed.wait(2 if i == 0 else 5)
                if i == 0:
                    assert not closed, f"{what}: closed ({conn.close_reason})"
                else:
                    kept_open += [] if closed else [what]
        with lp.LivePeer(b.content_id, "honest", seed=99) as bad:
            conn = bad.dial(v.peer)
            assert conn.ext_received.wait(5)
            conn.send_raw(struct.pack(">IBB", 64 << 20, 20, 3))  # a 64 MiB message
            if not conn.closed.wait(5):
                kept_open.append("a 64 MiB message length")
        written = v.stat("pieces_written")
        v.wait_playing(20, pieces=written + 2)
        assert not kept_open, f"still open after: {kept_open}\n{v.output()}"
    assert_plays(v)


@live_cli
def test_viewer_joining_a_new_broadcast_waits_for_no_missing_piece(tmp_path: Path) -> None:
    """A viewer that joins in the first seconds of a broadcast starts at the
    first piece there is: it neither waits skip_after seconds for sequence
    numbers before the broadcast's first nor counts them as skipped."""
    with LiveBroadcast(workdir=tmp_path / "b") as b:
        with _viewer(tmp_path, "v", b.content_id, peers_=[b.peer]) as v:
            p = v.wait_playing(20, pieces=3)
            first = b.progress_history()
            joins = v.log_lines("joining at|skipped pieces")
    newest = [x.get("newest") for x in first if x.get("newest") is not None]
    detail = f"{summary(v)}\nbroadcast's first piece: {newest[:1]}\nviewer: {joins}"
    print(detail)
    assert (p.get("pieces_skipped") or 0) == 0, detail
    assert (p.get("startup_s") or 99) < 2.5, detail
