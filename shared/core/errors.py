"""The project's own exceptions: every adapter maps its library's errors into these."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the project raises on purpose; ``status`` is its HTTP answer."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the status (e.g. ``Retry-After``)."""
        return {}


class InvalidInput(WorkbenchError):
    """The request cannot be used as it is; ``field`` names the part at fault when known."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class Unauthorized(WorkbenchError):
    """No valid credentials were given."""

    status = 401


class Forbidden(WorkbenchError):
    """The caller is known but may not do this."""

    status = 403


class NotFound(WorkbenchError):
    """A named thing does not exist, or is not the caller's to see."""

    status = 404

    def __init__(self, kind: str, id: str | None = None, *, message: str | None = None) -> None:
        if message is None:
            message = f"{kind} '{id}' not found" if id is not None else f"{kind} not found"
        super().__init__(message)
        self.kind = kind
        self.id = id


class Conflict(WorkbenchError):
    """The request clashes with the current state (in use, exists, wrong status)."""

    status = 409


class ContentTooLarge(WorkbenchError):
    """A request body larger than its documented limit; refused before (or while) it is read."""

    status = 413


class Unprocessable(WorkbenchError):
    """Well-formed, but cannot be carried out as asked (e.g. quickstart of a spec with dependencies)."""

    status = 422


class TooManyRequests(WorkbenchError):
    """Too many attempts (e.g. failed logins) in a window; ``retry_after`` seconds until it ends."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotSupported(WorkbenchError):
    """This deployment cannot do what is asked (e.g. a console where stacks are local processes)."""

    status = 501


class Unavailable(WorkbenchError):
    """A dependency (database, broker, object store, Clowder, cluster) cannot be reached; retry later."""

    status = 503
