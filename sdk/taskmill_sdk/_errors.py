"""The exception tree: every error answer (RFC 9457 problem+json) becomes one of these.

::

    TaskmillError
    ├── BadRequest             400 (and any other unmapped 4xx)
    ├── Unauthorized           401  missing or unknown bearer token
    ├── Forbidden              403  the token's role may not do this
    ├── NotFound               404
    ├── Conflict               409
    │   ├── DuplicateRejected  409  on_duplicate="reject" and the key is held
    │   └── LeaseConflict      409  the lease is revoked or already reported (also a LeaseLost)
    ├── LeaseLost                   the caller no longer holds the lease
    │   ├── LeaseConflict
    │   └── LeaseGone          410  the lease expired or a newer lease replaced it
    ├── TooLarge               413
    ├── ValidationError        422  ``errors`` names each offending field
    ├── ServerError            500 (and other 5xx not below)
    └── Unavailable            503, 502, 504, or the server could not be reached
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "DuplicateRejected",
    "FieldError",
    "Forbidden",
    "LeaseConflict",
    "LeaseGone",
    "LeaseLost",
    "NotFound",
    "ServerError",
    "TaskmillError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "error_from_response",
]


class TaskmillError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        status: the HTTP status (0 when no answer was received).
        problem: the problem+json body as received (empty when there was none).
        type: the problem ``type`` URI, e.g. ``urn:taskmill:problem:not-found``.
        title: the problem's short title.
        detail: the human-readable explanation.
    """

    def __init__(self, detail: str, *, status: int = 0, problem: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status = status
        self.problem: dict[str, Any] = problem or {}
        self.type: str = str(self.problem.get("type", ""))
        self.title: str = str(self.problem.get("title", ""))
        self.detail = detail

    @property
    def code(self) -> str:
        """The last part of the problem type (``not-found``, ``lease-gone``, …)."""
        return self.type.rsplit(":", 1)[-1] if self.type else ""

    def __str__(self) -> str:
        return f"{self.status} {self.detail}" if self.status else self.detail


class BadRequest(TaskmillError):
    """400, or a 4xx the SDK has no finer class for."""


class Unauthorized(TaskmillError):
    """401: no bearer token, or one the server does not know."""


class Forbidden(TaskmillError):
    """403: the token's role may not do this."""


class NotFound(TaskmillError):
    """404: no such task or lease (or retention removed it)."""


class Conflict(TaskmillError):
    """409: the request conflicts with the current state."""


class DuplicateRejected(Conflict):
    """409 for ``on_duplicate="reject"``: ``existing_task_id`` holds the dedup key."""

    @property
    def existing_task_id(self) -> str | None:
        """The live task that holds the key."""
        value = self.problem.get("existing_task_id")
        return str(value) if value is not None else None


class LeaseLost(TaskmillError):
    """The caller no longer holds the lease; nothing it reports is recorded."""


class LeaseConflict(Conflict, LeaseLost):
    """409 on a lease call: revoked (cancel requested) or already completed/failed/released.

    ``task_status`` says which: ``cancelling`` means the server wants the cancel
    acknowledged (``POST /leases/{id}/cancelled``).
    """

    @property
    def task_status(self) -> str | None:
        """The task's status when the call was refused, if the server said."""
        value = self.problem.get("task_status")
        return str(value) if value is not None else None


class LeaseGone(LeaseLost):
    """410: the lease expired or a newer lease replaced it."""


class TooLarge(TaskmillError):
    """413: a payload, state, body or batch beyond the server's limit."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending field of a 422 answer, e.g. ``tasks[2].priority``."""

    field: str
    message: str
    type: str


class ValidationError(TaskmillError):
    """422: invalid input. ``errors`` lists each offending field."""

    @property
    def errors(self) -> list[FieldError]:
        """The offending fields as the server named them."""
        out = []
        for item in self.problem.get("errors") or []:
            if isinstance(item, dict):
                out.append(
                    FieldError(
                        field=str(item.get("field", "")),
                        message=str(item.get("message", "")),
                        type=str(item.get("type", "")),
                    )
                )
        return out


class ServerError(TaskmillError):
    """500 or another unexpected 5xx."""


class Unavailable(TaskmillError):
    """The service could not be reached, or answered 502/503/504, after every retry."""


_BY_STATUS: dict[int, type[TaskmillError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: LeaseGone,
    413: TooLarge,
    422: ValidationError,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}

_BY_CODE: dict[str, type[TaskmillError]] = {
    "duplicate-rejected": DuplicateRejected,
    "lease-conflict": LeaseConflict,
    "lease-gone": LeaseGone,
}


def error_from_response(status: int, body: Any, text: str = "") -> TaskmillError:
    """The exception for an error answer (``body`` is the parsed JSON, if any)."""
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("type", "")).rsplit(":", 1)[-1]
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else BadRequest
    detail = str(problem.get("detail") or problem.get("title") or text[:200] or f"HTTP {status}")
    return cls(detail, status=status, problem=problem)
