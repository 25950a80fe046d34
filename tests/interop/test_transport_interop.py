"""OpenAce's transport against BitTorrent software no one here wrote.

The openace CLI (play / seed) exchanges real torrents on 127.0.0.1 with
libtorrent 2.0 (python3-libtorrent), transmission-cli 3.00 and opentracker,
through the harness in peers.py (proved by test_harness.py).
"""

import json
import os
import random
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import peers
from conftest import MULTI_FILE_SPEC

# 48 KiB: a multiple of 16 KiB that is not a power of two.
ODD_PIECE = 3 * 16384


def file_index(info: Any, rel: str) -> int:
    """Index of content/<rel> in a libtorrent torrent_info."""
    fs = info.files()
    for i in range(fs.num_files()):
        if fs.file_path(i).replace(os.sep, "/").split("/", 1)[1] == rel:
            return i
    raise AssertionError(f"{rel} not in the torrent")


def final_result(play: peers.OpenacePlay) -> Dict[str, Any]:
    """The play job's result from its --json event lines."""
    for e in reversed(play.events()):
        data = e.get("data", {})
        if isinstance(data, dict) and data.get("state") == "done":
            return data["result"]
    raise AssertionError("no result event\n" + play.proc.output())


def progress_events(play: peers.OpenacePlay) -> List[Dict[str, Any]]:
    return [e["data"]["progress"] for e in play.events()
            if isinstance(e.get("data"), dict) and "progress" in e["data"]]


@peers.requires("libtorrent", "openace play")
def test_openace_plays_a_chosen_file_from_libtorrent_by_magnet(content: Path, tmp_path: Path,
                                                              lt_seeder, closing) -> None:
    seeder = lt_seeder(content, piece_size=ODD_PIECE)
    idx = file_index(seeder.info, "video/part2.mkv")
    # A bare magnet: the metadata can only come from the peer (BEP 9).
    magnet = f"magnet:?xt=urn:btih:{seeder.infohash}"
    play = closing(peers.OpenacePlay(magnet, output=tmp_path / "out.mkv", file_index=idx,
                                     peers=[("127.0.0.1", seeder.port)], workdir=tmp_path / "p"))
    play.wait(60)
    assert (tmp_path / "out.mkv").read_bytes() == (content / "video" / "part2.mkv").read_bytes()
    result = final_result(play)
    assert result["file_index"] == idx
    assert result["piece_length"] == ODD_PIECE
    assert result["hash_failures"] == 0
    states = [p.get("state") for p in progress_events(play)]
    assert states[0] == "resolving" and "playing" in states


@peers.requires("libtorrent", "openace play")
def test_openace_plays_to_stdout_from_a_torrent_file(content: Path, tmp_path: Path,
                                                    lt_seeder, closing) -> None:
    src = content / "video" / "part1.mkv"
    seeder = lt_seeder(src, piece_size=32768)
    play = closing(peers.OpenacePlay(seeder.torrent_path, output="-",
                                     peers=[("127.0.0.1", seeder.port)], workdir=tmp_path / "p"))
    play.wait(60)
    assert play.output_path.read_bytes() == src.read_bytes()


@peers.requires("libtorrent", "openace seed")
def test_libtorrent_downloads_what_openace_seeds(content: Path, tmp_path: Path, closing) -> None:
    seed = closing(peers.OpenaceSeed(content, piece_length=ODD_PIECE,
                                     save_torrent=tmp_path / "c.torrent", workdir=tmp_path / "s"))
    dl = closing(peers.LtDownloader(tmp_path / "dl", seed.magnet, peers=[seed.peer]))
    ti = dl.wait_metadata(20)  # from OpenAce, by BEP 9
    assert str(ti.info_hashes().v1) == seed.infohash
    assert ti.piece_length() == ODD_PIECE
    dl.wait_complete(60, expect=content)
    assert dl.hash_failures == 0
    # The .torrent it saved is the one libtorrent got.
    assert peers.torrent_infohash(tmp_path / "c.torrent") == seed.infohash


@peers.requires("transmission", "openace seed")
def test_transmission_downloads_what_openace_seeds(content: Path, tmp_path: Path) -> None:
    # Transmission never dials loopback peers: OpenAce dials it.  A first run
    # makes the .torrent transmission loads; the second seeds it with --peer.
    with peers.OpenaceSeed(content, piece_length=ODD_PIECE, save_torrent=tmp_path / "c.torrent",
                           workdir=tmp_path / "s1") as first:
        infohash = first.infohash
    with peers.Transmission(tmp_path / "c.torrent", tmp_path / "tdl",
                            workdir=tmp_path / "transmission") as tr:
        with peers.OpenaceSeed(content, piece_length=ODD_PIECE, peers=[tr.peer],
                               workdir=tmp_path / "s2") as seed:
            assert seed.infohash == infohash
            tr.wait_complete(60, expect=content)
    assert peers.tree_diff(content, tmp_path / "tdl" / content.name) == [
        f"only in {content}: empty.bin"]  # transmission 3.00 skips zero-length files


@peers.requires("opentracker", "openace seed", "openace play")
def test_openace_peers_find_each_other_through_opentracker_http_and_udp(
        content: Path, tmp_path: Path, tracker: peers.Opentracker, closing) -> None:
    # The seeder announces over HTTP; the player only knows the UDP tracker.
    seed = closing(peers.OpenaceSeed(content, piece_length=ODD_PIECE,
                                     trackers=[tracker.http_announce], workdir=tmp_path / "s"))
    tracker.add(seed.infohash)  # the first announce was refused: the seeder retries
    peers.wait_until(lambda: seed.peer in tracker.peers(seed.infohash), 30,
                     "the seeder to announce itself over HTTP", details=seed.proc.output)
    magnet = f"magnet:?xt=urn:btih:{seed.infohash}&tr={tracker.udp_announce}"
    play = closing(peers.OpenacePlay(magnet, output=tmp_path / "out.mkv", file_index=None,
                                     workdir=tmp_path / "p"))
    play.wait(60)
    largest = max(MULTI_FILE_SPEC, key=MULTI_FILE_SPEC.get)
    assert (tmp_path / "out.mkv").read_bytes() == (content / largest).read_bytes()
    result = final_result(play)
    # The UDP tracker answered (with the seeder); its 'completed' announce
    # may still be in flight when the job ends.
    assert any(t["url"] == tracker.udp_announce and t["state"] in ("ok", "announcing")
               and t["failures"] == 0 and t["peers"] >= 1 for t in result["trackers"]), result["trackers"]


@peers.requires("libtorrent", "openace seed")
def test_libtorrent_finds_an_openace_seeder_through_its_embedded_tracker(
        content: Path, tmp_path: Path, closing) -> None:
    http_port = peers.free_port()
    seed = closing(peers.OpenaceSeed(
        content, piece_length=ODD_PIECE, workdir=tmp_path / "s",
        sets={"transport.embedded_tracker": "true", "engine.http_address": f"127.0.0.1:{http_port}"}))
    announce = f"http://127.0.0.1:{http_port}/announce"
    assert f"tr={announce.replace(':', '%3A').replace('/', '%2F')}" in seed.magnet
    # No explicit peer: only the tracker in the magnet link.
    dl = closing(peers.LtDownloader(tmp_path / "dl", seed.magnet))
    dl.wait_complete(60, expect=content)
    assert announce in dl.tracker_replies


class CorruptPeer:
    """A BitTorrent peer that claims every piece and answers every request
    with random bytes: the hostile peer the engine must ban."""

    def __init__(self, infohash: str, num_pieces: int) -> None:
        self.ih = bytes.fromhex(infohash)
        self.num_pieces = num_pieces
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.blocks_sent = 0
        self.connections = 0
        self.stop_flag = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._peer, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _peer(self, conn: socket.socket) -> None:
        rng = random.Random(7)
        conn.settimeout(30)
        try:
            hs = self._read(conn, 68)
            if hs[28:48] != self.ih:
                return
            conn.sendall(b"\x13BitTorrent protocol" + bytes(8) + self.ih + b"-XX0001-" + bytes(12))
            bits = bytearray((self.num_pieces + 7) // 8)
            for i in range(self.num_pieces):
                bits[i // 8] |= 0x80 >> (i % 8)
            conn.sendall(struct.pack(">IB", 1 + len(bits), 5) + bytes(bits))
            conn.sendall(struct.pack(">IB", 1, 1))  # unchoke
            while not self.stop_flag:
                (length,) = struct.unpack(">I", self._read(conn, 4))
                if length == 0:
                    continue
                body = self._read(conn, length)
                if body[0] == 6:  # request: random bytes instead of the data
                    index, begin, size = struct.unpack(">III", body[1:13])
                    data = bytes(rng.getrandbits(8) for _ in range(size))
                    conn.sendall(struct.pack(">IBII", 9 + size, 7, index, begin) + data)
                    self.blocks_sent += 1
        except (EOFError, OSError, struct.error):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop_flag = True
        self.sock.close()


@peers.requires("libtorrent", "openace play")
def test_a_peer_sending_corrupt_pieces_is_banned_and_the_output_is_still_right(
        content: Path, tmp_path: Path, lt_seeder, closing) -> None:
    src = content / "video" / "part1.mkv"
    seeder = lt_seeder(src, piece_size=16384)
    bad = closing(CorruptPeer(seeder.infohash, seeder.info.num_pieces()))
    play = closing(peers.OpenacePlay(seeder.torrent_path, output=tmp_path / "out.mkv",
                                     peers=[("127.0.0.1", bad.port), ("127.0.0.1", seeder.port)],
                                     workdir=tmp_path / "p"))
    play.wait(90)
    assert (tmp_path / "out.mkv").read_bytes() == src.read_bytes()
    result = final_result(play)
    assert bad.blocks_sent > 0
    assert result["hash_failures"] >= 1
    assert result["bans"] >= 1
