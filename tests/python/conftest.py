"""Shared fixtures for the openace Python tests.

Every engine listens on 127.0.0.1:0 (a free port) and keeps its log off the
console, so tests never clash with each other or with a running engine.
"""

import copy
from typing import Any, Dict, Iterator, List, Optional

import pytest

import openace

# Per test config: a real engine, a free HTTP port, no console noise.
CONFIG: Dict[str, Any] = {
    "engine": {"http_address": "127.0.0.1:0"},
    "logging": {"console": False},
}


def make_config(**engine: Any) -> Dict[str, Any]:
    """CONFIG with extra [engine] keys (log_level="debug", ...)."""
    cfg = copy.deepcopy(CONFIG)
    cfg["engine"].update(engine)
    return cfg


@pytest.fixture
def engine() -> Iterator[openace.Engine]:
    with openace.Engine(CONFIG) as e:
        yield e


def wait_final(engine: openace.Engine, job_id: int, timeout: float = 60.0,
               states: Optional[List[str]] = None) -> Dict[str, Any]:
    """Reads events until job_id's final job_state event; returns its data."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = engine.wait_event(1.0)
        if ev is None or ev["event"] != "job_state" or ev["job_id"] != job_id:
            continue
        if states is not None:
            states.append(ev["data"]["state"])
        if ev["final"]:
            return ev["data"]
    pytest.fail(f"no final event for job {job_id} within {timeout} s")
