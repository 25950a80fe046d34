"""The interop harness proves itself with software no one here wrote.

libtorrent, transmission-cli and opentracker exchange real torrents on
127.0.0.1 through peers.py; if these pass, a failing OpenAce interop test
points at OpenAce, not at the harness.
"""

import hashlib
import time
from pathlib import Path

import pytest

import peers
from conftest import MULTI_FILE_SPEC

# 48 KiB: a multiple of 16 KiB that is not a power of two, so pieces and
# transmission's 12 KiB blocks straddle file boundaries at odd offsets.
ODD_PIECE = 3 * 16384


def test_make_files_is_deterministic_and_tree_diff_sees_one_byte(tmp_path: Path) -> None:
    a = peers.make_files(tmp_path / "a", MULTI_FILE_SPEC)
    peers.make_files(tmp_path / "b", MULTI_FILE_SPEC)
    assert {k: p.stat().st_size for k, p in a.items()} == MULTI_FILE_SPEC
    assert peers.same_tree(tmp_path / "a", tmp_path / "b")
    assert a["video/part1.mkv"].read_bytes()[:1000] != a["video/part2.mkv"].read_bytes()[:1000]
    victim = tmp_path / "b" / "video" / "part1.mkv"
    data = bytearray(victim.read_bytes())
    data[500_000] ^= 1
    victim.write_bytes(bytes(data))
    assert peers.tree_diff(tmp_path / "a", tmp_path / "b") == [
        "video/part1.mkv: 700001 vs 700001 bytes, content differs"]
    (tmp_path / "b" / "extra").write_bytes(b"x")
    assert f"only in {tmp_path / 'b'}: extra" in peers.tree_diff(tmp_path / "a", tmp_path / "b")


@peers.requires("libtorrent")
def test_bencode_helpers_agree_with_libtorrent(content: Path, tmp_path: Path) -> None:
    data = peers.make_torrent(content, ODD_PIECE, ["http://127.0.0.1:1/announce"])
    import libtorrent as lt
    ti = lt.torrent_info(lt.bdecode(data))
    assert peers.bencode(peers.bdecode(data)) == data
    assert peers.torrent_infohash(data) == str(ti.info_hashes().v1)
    moved = peers.torrent_with_trackers(data, ["udp://127.0.0.1:2/announce"])
    ti2 = lt.torrent_info(lt.bdecode(moved))
    assert str(ti2.info_hashes().v1) == str(ti.info_hashes().v1)
    assert [t.url for t in ti2.trackers()] == ["udp://127.0.0.1:2/announce"]
    with pytest.raises(ValueError):
        peers.bdecode(data[:-1])


@peers.requires("opentracker")
def test_opentracker_serves_whitelisted_hashes_only(tracker: peers.Opentracker) -> None:
    ih = hashlib.sha1(b"whitelist me").hexdigest()
    with pytest.raises(peers.HarnessError, match="refused"):
        tracker.announce(ih, port=4242)
    tracker.add(ih)
    tracker.announce(ih, port=4242)
    assert tracker.peers(ih) == [("127.0.0.1", 4242)]
    assert tracker.scrape(ih) == (1, 0)


@peers.requires("libtorrent")
def test_libtorrent_gets_bare_magnet_from_explicit_peer(content: Path, tmp_path: Path,
                                                        lt_seeder, closing) -> None:
    seeder = lt_seeder(content, piece_size=ODD_PIECE)
    assert seeder.info.piece_length() == ODD_PIECE
    assert seeder.info.num_files() == len(MULTI_FILE_SPEC)
    # No tracker, no name: the metadata can only come from the peer (BEP 9).
    magnet = f"magnet:?xt=urn:btih:{seeder.infohash}"
    dl = closing(peers.LtDownloader(tmp_path / "dl", magnet, peers=[("127.0.0.1", seeder.port)]))
    ti = dl.wait_metadata(20)
    assert str(ti.info_hashes().v1) == seeder.infohash
    assert ti.piece_length() == ODD_PIECE
    dl.wait_complete(30, expect=content)
    assert dl.hash_failures == 0
    assert peers.same_tree(content, tmp_path / "dl" / content.name)


@peers.requires("libtorrent")
def test_libtorrent_moves_a_torrent_whose_piece_length_is_no_block_multiple(
        content: Path, tmp_path: Path, lt_seeder, closing) -> None:
    # 40000 bytes: libtorrent's creator refuses it, so peers.make_torrent_v1
    # builds the torrent; libtorrent must still seed and fetch it.
    seeder = lt_seeder(content, piece_size=40000)
    assert seeder.info.piece_length() == 40000
    dl = closing(peers.LtDownloader(tmp_path / "dl", seeder.torrent_bytes,
                                    peers=[("127.0.0.1", seeder.port)]))
    dl.wait_complete(30, expect=content)
    assert dl.hash_failures == 0


@peers.requires("libtorrent", "transmission", "opentracker")
def test_transmission_downloads_through_opentracker_http(content: Path, tmp_path: Path,
                                                        tracker: peers.Opentracker,
                                                        lt_seeder) -> None:
    seeder = lt_seeder(content, piece_size=ODD_PIECE, trackers=[tracker.http_announce],
                       start=False)
    tracker.add(seeder.infohash)
    seeder.start(timeout=15)
    assert tracker.peers(seeder.infohash) == [("127.0.0.1", seeder.port)]
    with peers.Transmission(seeder.torrent_path, tmp_path / "tdl",
                            workdir=tmp_path / "transmission") as tr:
        peers.wait_until(lambda: tracker.scrape(seeder.infohash)[1] >= 1, 15,
                         "transmission to announce itself as a leecher", interval=0.1,
                         details=tr.proc.output)
        # transmission drops the seeder's 127.0.0.1 address as "martian"; the
        # seeder learns transmission's address from the tracker and dials it.
        seeder.reannounce(timeout=10)
        assert tr.peer in tracker.peers(seeder.infohash)
        tr.wait_complete(45, expect=content)
    # transmission 3.00 leaves zero-length files uncreated, all else is equal.
    assert peers.tree_diff(content, tmp_path / "tdl" / content.name) == [
        f"only in {content}: empty.bin"]


@peers.requires("libtorrent", "transmission")
def test_transmission_download_from_an_invited_seeder(content: Path, tmp_path: Path,
                                                      lt_seeder) -> None:
    seeder = lt_seeder(content / "video" / "part1.mkv", piece_size=32768)
    out = peers.transmission_download(seeder.torrent_path, tmp_path / "tdl",
                                      invite=seeder.connect_to, timeout=45,
                                      expect=content / "video" / "part1.mkv")
    assert out == tmp_path / "tdl" / "part1.mkv"


@peers.requires("libtorrent", "opentracker")
def test_opentracker_udp_gives_libtorrent_its_peer(content: Path, tmp_path: Path,
                                                   tracker: peers.Opentracker, lt_seeder,
                                                   closing) -> None:
    seeder = lt_seeder(content, piece_size=ODD_PIECE, trackers=[tracker.udp_announce],
                       start=False)
    tracker.add(seeder.infohash)
    seeder.start(timeout=15)
    assert seeder.tracker_replies == [tracker.udp_announce]
    # The .torrent names the UDP tracker only and no peer is given.
    assert [t.url for t in seeder.info.trackers()] == [tracker.udp_announce]
    t0 = time.monotonic()
    dl = closing(peers.LtDownloader(tmp_path / "dl", seeder.torrent_path, sequential=True))
    dl.wait_complete(30, expect=content)
    assert tracker.udp_announce in dl.tracker_replies
    first = dl.first_byte_time()
    assert first is not None and 0 <= first <= time.monotonic() - t0
