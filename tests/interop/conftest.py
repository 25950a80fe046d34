"""Fixtures for the interop tests (real BitTorrent software on 127.0.0.1).

Run from the repository root with the system interpreter, which is the one
python3-libtorrent is built for:

    /usr/bin/python3 -m pytest -q tests/interop

Tests needing a missing tool skip with the reason (see peers.requires).
The openace binary is $OPENACE_CLI, else build/openace.
"""

import signal
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (needs the path above)

# Several files, one empty, file boundaries falling inside pieces of 48 KiB.
MULTI_FILE_SPEC: Dict[str, int] = {
    "video/part1.mkv": 700_001,
    "video/part2.mkv": 300_000,
    "subs/en.srt": 12_345,
    "readme.txt": 1,
    "empty.bin": 0,
}


@pytest.fixture(autouse=True)
def time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails (not hangs) a test that runs longer than its module's TEST_LIMIT
    seconds (modules without one have no limit)."""
    limit = int(getattr(request.module, "TEST_LIMIT", 0))
    if limit <= 0:
        yield
        return

    def expired(*_: Any) -> None:
        raise peers.HarnessTimeout(f"test ran over its {limit} s limit")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return peers.REPO_ROOT


@pytest.fixture(scope="session")
def openace_cli() -> Path:
    """The openace binary; skips the test when it is not built."""
    cli = peers.openace_cli()
    if not cli.is_file():
        pytest.skip(f"openace CLI not found at {cli} (build it or set OPENACE_CLI)")
    return cli


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """closing(obj) returns obj and closes it (close() or stop()) at teardown,
    last registered first."""
    objs: List[Any] = []

    def register(obj: Any) -> Any:
        objs.append(obj)
        return obj
    yield register
    for obj in reversed(objs):
        (getattr(obj, "close", None) or obj.stop)()


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A directory of MULTI_FILE_SPEC files with deterministic bytes."""
    root = tmp_path / "content"
    peers.make_files(root, MULTI_FILE_SPEC)
    return root


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[peers.Opentracker]:
    """A running private opentracker (empty whitelist: add() infohashes)."""
    if not peers.OPENTRACKER:
        pytest.skip("opentracker is not installed")
    with peers.Opentracker(workdir=tmp_path / "opentracker") as t:
        yield t


@pytest.fixture
def lt_seeder(tmp_path: Path, closing: Callable[[Any], Any]) -> Callable[..., peers.LtSeeder]:
    """lt_seeder(path, **LtSeeder kwargs): a seeder closed at teardown."""
    if not peers.HAVE_LIBTORRENT:
        pytest.skip("python3-libtorrent is not importable (use /usr/bin/python3)")
    count = iter(range(1000))

    def make(path: Path, **kw: Any) -> peers.LtSeeder:
        kw.setdefault("workdir", tmp_path / f"seeder{next(count)}")
        return closing(peers.LtSeeder(path, **kw))
    return make
