# Type stubs for the public openace package (python/openace/__init__.py).
from types import TracebackType
from typing import Any, Dict, Mapping, Optional, Type, Union

from ._openace import (
    EVENT_ENGINE_STATE as EVENT_ENGINE_STATE,
    EVENT_JOB_PROGRESS as EVENT_JOB_PROGRESS,
    EVENT_JOB_STATE as EVENT_JOB_STATE,
    EVENT_LOG as EVENT_LOG,
    EVENT_NONE as EVENT_NONE,
    EVENT_OVERFLOW as EVENT_OVERFLOW,
    EVENT_SHUTDOWN as EVENT_SHUTDOWN,
    Error as Error,
    api_version as api_version,
    error_name as error_name,
    error_string as error_string,
)

__version__: str

# {"event": "job_state" | "job_progress" | "engine_state" | "overflow" | "log"
#  | "shutdown" | int, "job_id": int, "final": bool, "error": int, "data": Any}
Event = Dict[str, Any]

class Engine:
    def __init__(self, config: Union[None, str, Mapping[str, Any]] = ...) -> None: ...
    def __enter__(self) -> Engine: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def shutdown(self) -> None: ...
    def submit(self, job: Union[str, Mapping[str, Any]]) -> int: ...
    def cancel(self, job_id: int) -> None: ...
    def wait_event(self, timeout: float = ...) -> Optional[Event]: ...
    def run(self, job: Union[str, Mapping[str, Any]], timeout: float = ...) -> Any: ...
    def wakeup_fd(self) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def logs(
        self,
        *,
        level: Optional[str] = ...,
        component: Optional[str] = ...,
        text: Optional[str] = ...,
        job_id: Optional[int] = ...,
        since_ms: Optional[int] = ...,
        until_ms: Optional[int] = ...,
        limit: Optional[int] = ...,
    ) -> Dict[str, Any]: ...
    def http_address(self) -> str: ...
    def control(self, engine: str, action: str) -> None: ...
