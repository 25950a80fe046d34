# Stubs for the compiled binding openace._openace (python/src/module.cpp).
# Use the openace package; this layer passes JSON as text.
from typing import Optional, Tuple

__version__: str

API_VERSION_MAJOR: int
API_VERSION_MINOR: int

EVENT_NONE: int
EVENT_JOB_STATE: int
EVENT_JOB_PROGRESS: int
EVENT_ENGINE_STATE: int
EVENT_OVERFLOW: int
EVENT_LOG: int
EVENT_SHUTDOWN: int

OPENACE_EINVAL: int
OPENACE_ENOMEM: int
OPENACE_ECONFIG: int
OPENACE_EJOB: int
OPENACE_ENOTFOUND: int
OPENACE_ESTATE: int
OPENACE_EIO: int
OPENACE_ENET: int
OPENACE_EMEDIA: int
OPENACE_EPROTO: int
OPENACE_ETIMEOUT: int
OPENACE_ECANCELLED: int
OPENACE_EUNSUPPORTED: int
OPENACE_EBUSY: int
OPENACE_EPERM: int
OPENACE_EPARSE: int
OPENACE_ESHUTDOWN: int
OPENACE_EINTERNAL: int

class Error(Exception):
    name: str
    code: int
    component: str
    operation: str
    detail: str

def make_error(code: int, component: str, operation: str, detail: str) -> Error: ...
def api_version() -> int: ...
def error_name(code: int) -> str: ...
def error_string(code: int) -> str: ...

class Engine:
    def __init__(self, config: str = ...) -> None: ...
    def submit(self, job_json: str) -> int: ...
    def cancel(self, job_id: int) -> None: ...
    def wait_event(self, timeout: float = ...) -> Optional[Tuple[int, int, bool, int, str]]: ...
    def wakeup_fd(self) -> int: ...
    def stats(self) -> str: ...
    def logs(self, filter_json: str = ...) -> str: ...
    def http_address(self) -> str: ...
    def control(self, engine: str, action: str) -> None: ...
    def shutdown(self) -> None: ...
