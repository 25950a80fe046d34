"""OpenAce: an embeddable P2P live and on-demand streaming engine.

    import openace

    with openace.Engine({"engine": {"http_address": "127.0.0.1:0"}}) as engine:
        info = engine.run({"type": "probe"})
        print(info["ffmpeg"]["version"], engine.http_address())

An :class:`Engine` runs its own threads (one network loop, media threads);
Python is never called from them.  Calls may come from any Python thread,
except :meth:`Engine.wait_event`, which belongs to one thread at a time.  Every
call that can block releases the GIL.  For asyncio or ``select``, watch
:meth:`Engine.wakeup_fd`: it is readable while events are pending.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any, Deque, Dict, Mapping, Optional, Tuple, Union

from . import _openace
from ._openace import (
    EVENT_ENGINE_STATE,
    EVENT_JOB_PROGRESS,
    EVENT_JOB_STATE,
    EVENT_LOG,
    EVENT_NONE,
    EVENT_OVERFLOW,
    EVENT_SHUTDOWN,
    Error,
    api_version,
    error_name,
    error_string,
)

__version__: str = _openace.__version__

__all__ = [
    "Engine",
    "Error",
    "EVENT_NONE",
    "EVENT_JOB_STATE",
    "EVENT_JOB_PROGRESS",
    "EVENT_ENGINE_STATE",
    "EVENT_OVERFLOW",
    "EVENT_LOG",
    "EVENT_SHUTDOWN",
    "api_version",
    "error_name",
    "error_string",
    "__version__",
]

# Event ids -> the names used in event dicts.  Ids not listed here (added by a
# newer library) are reported as plain ints: callers must ignore them.
_EVENT_NAMES: Dict[int, str] = {
    EVENT_JOB_STATE: "job_state",
    EVENT_JOB_PROGRESS: "job_progress",
    EVENT_ENGINE_STATE: "engine_state",
    EVENT_OVERFLOW: "overflow",
    EVENT_LOG: "log",
    EVENT_SHUTDOWN: "shutdown",
}

Event = Dict[str, Any]
_RawEvent = Tuple[int, int, bool, int, str]


def _to_json(value: Union[str, Mapping[str, Any]], what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    raise TypeError(f"{what} must be a dict or a JSON string, not {type(value).__name__}")


def _event_dict(raw: _RawEvent) -> Event:
    event_id, error, final, job_id, text = raw
    return {
        "event": _EVENT_NAMES.get(event_id, event_id),
        "job_id": job_id,
        "final": bool(final),
        "error": error,
        "data": json.loads(text),
    }


class Engine:
    """One OpenAce engine: the network loop, the five internal engines
    (main, segmenter, live, transport, streamer) and the local HTTP API.

    ``config`` is ``None`` (defaults), TOML or JSON text, or a dict (sent as
    JSON).  Raises :class:`Error` (name ``OPENACE_ECONFIG`` naming the key and
    line, ``OPENACE_ENET`` when the HTTP address is taken).

    Used as a context manager, the engine shuts down on exit.  After
    :meth:`shutdown` every call except :meth:`wait_event` and :meth:`logs`
    raises :class:`Error` named ``OPENACE_ESHUTDOWN``.
    """

    def __init__(self, config: Union[None, str, Mapping[str, Any]] = None) -> None:
        text = "" if config is None else _to_json(config, "config")
        self._engine = _openace.Engine(text)
        # Events that run() read for other jobs, handed out by wait_event().
        self._pending: Deque[_RawEvent] = collections.deque()

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stops every job and engine and joins the engine's threads.
        Blocking, idempotent."""
        self._engine.shutdown()

    # -- jobs ------------------------------------------------------------
    def submit(self, job: Union[str, Mapping[str, Any]]) -> int:
        """Validates and queues a job (``{"type": "probe", ...}``); returns
        its id.  Raises :class:`Error` (``OPENACE_EJOB`` naming the field)."""
        return self._engine.submit(_to_json(job, "job"))

    def cancel(self, job_id: int) -> None:
        """Cancels a job in any state.  Raises ``OPENACE_ENOTFOUND`` for an
        unknown job and ``OPENACE_ESTATE`` for one that already ended."""
        self._engine.cancel(job_id)

    def wait_event(self, timeout: float = -1.0) -> Optional[Event]:
        """The next event, or ``None`` after ``timeout`` seconds (0 polls,
        negative waits forever).  The GIL is released while waiting.

        An event is ``{"event": "job_state" | "job_progress" | "engine_state"
        | "overflow" | "log" | "shutdown" | <int id of a newer kind>,
        "job_id": int, "final": bool, "error": int, "data": dict}``.
        """
        if self._pending:
            return _event_dict(self._pending.popleft())
        raw = self._engine.wait_event(timeout)
        return None if raw is None else _event_dict(raw)

    def run(self, job: Union[str, Mapping[str, Any]], timeout: float = 60.0) -> Any:
        """Submits ``job``, waits for its final event and returns its
        ``result``.  Raises :class:`Error`: the job's own error when it
        failed, ``OPENACE_ECANCELLED`` when it was cancelled, and
        ``OPENACE_ETIMEOUT`` (after cancelling the job) when ``timeout``
        seconds pass first.

        Events of other jobs read meanwhile are kept and returned by later
        :meth:`wait_event` calls.  Like :meth:`wait_event`, call it from the
        event thread only.
        """
        job_id = self.submit(job)
        deadline = time.monotonic() + timeout
        kept = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    try:
                        self.cancel(job_id)
                    except Error:
                        pass  # it ended just now; its final event stays queued
                    raise _openace.make_error(
                        _openace.OPENACE_ETIMEOUT, "job", "run",
                        f"job {job_id} did not finish within {timeout:g} s; it was cancelled")
                raw = self._engine.wait_event(left)
                if raw is None:
                    continue
                event_id, _error, final, ev_job, text = raw
                if not (event_id == EVENT_JOB_STATE and ev_job == job_id):
                    kept.append(raw)
                    continue
                if not final:
                    continue
                data = json.loads(text)
                state = data.get("state")
                if state == "done":
                    return data.get("result")
                if state == "cancelled":
                    raise _openace.make_error(_openace.OPENACE_ECANCELLED, "job", "run",
                                              f"job {job_id} was cancelled")
                err = data.get("error") or {}
                exc = _openace.make_error(
                    int(err.get("code", _openace.OPENACE_EINTERNAL)),
                    str(err.get("component", "job")),
                    str(err.get("operation", "run")),
                    f"job {job_id} failed")
                # Keep the engine's own message: it already names component,
                # operation and the bad input.
                message = str(err.get("message") or exc.args[0])
                exc.args = (message,)
                exc.detail = message
                raise exc
        finally:
            self._pending.extend(kept)

    # -- observation -----------------------------------------------------
    def wakeup_fd(self) -> int:
        """A file descriptor that is readable while events are pending (for
        ``select``/``poll`` or ``loop.add_reader``).  Owned by the engine:
        never read from or close it; :meth:`wait_event` resets it."""
        return self._engine.wakeup_fd()

    def stats(self) -> Dict[str, Any]:
        """Per-engine state and counters, jobs, events, log health, process
        CPU and RSS, HTTP server counters."""
        return json.loads(self._engine.stats())

    def logs(
        self,
        *,
        level: Optional[str] = None,
        component: Optional[str] = None,
        text: Optional[str] = None,
        job_id: Optional[int] = None,
        since_ms: Optional[int] = None,
        until_ms: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Log entries ``{"entries": [...], "stats": {...}}``.  Filters left
        as ``None`` are not applied: ``level`` is a minimum ("debug", "info",
        "warn", "error"), ``text`` a case-insensitive substring, ``job_id``
        the correlation id, ``since_ms``/``until_ms`` Unix milliseconds."""
        filters = {
            "level": level,
            "component": component,
            "text": text,
            "job_id": job_id,
            "since_ms": since_ms,
            "until_ms": until_ms,
            "limit": limit,
        }
        query = {k: v for k, v in filters.items() if v is not None}
        return json.loads(self._engine.logs(json.dumps(query)))

    def http_address(self) -> str:
        """``"127.0.0.1:6878"``: where the HTTP API really listens (a real
        port even when the config asked for port 0); ``""`` while the
        streamer engine is stopped."""
        return self._engine.http_address()

    def control(self, engine: str, action: str) -> None:
        """``engine``: main | segmenter | live | transport | streamer;
        ``action``: start | stop | pause | resume | restart.  Blocking."""
        self._engine.control(engine, action)
