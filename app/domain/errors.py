"""The exception tree of the use cases. The API renders each as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, Self

from ..schemas.problems import PROBLEM_TYPE_PREFIX, ProblemCode
from ..store.errors import Unavailable as StoreUnavailable

__all__ = ["StoreUnavailable"]  # re-exported: the API maps it to 503 without knowing the store


class DomainError(Exception):
    """Base: ``status`` and ``code`` pick the HTTP status and the problem ``type``."""

    status = 400
    code: ProblemCode = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @classmethod
    def at(
        cls, field: str, message: str, kind: str = "value_error", *, detail: str | None = None
    ) -> Self:
        """The error about one field: ``errors`` names it (``detail`` defaults to both)."""
        return cls(
            detail or f"{field}: {message}",
            errors=[{"field": field, "message": message, "type": kind}],
        )

    def as_problem(self) -> dict[str, Any]:
        """The RFC 9457 body for this error."""
        body = {"type": problem_type(self.code), "title": self.title, "status": self.status}
        body["detail"] = self.detail
        body.update({k: v for k, v in self.extra.items() if v is not None})
        return body


def problem_type(code: ProblemCode) -> str:
    """The problem ``type`` URI for a code (documented in the README's API section)."""
    return PROBLEM_TYPE_PREFIX + code


class NotFound(DomainError):
    """The named resource does not exist (or retention removed it)."""

    status, code, title = 404, "not-found", "Not found"


class DuplicateRejected(DomainError):
    """``on_duplicate=reject`` and a live task holds the dedup key."""

    status, code, title = 409, "duplicate-rejected", "Duplicate task"


class ParentNotRunning(DomainError):
    """Children can be added only to a running task (by the holder of its lease)."""

    status, code, title = 409, "parent-not-running", "Parent not running"


class TaskFinished(DomainError):
    """The task already ended; it cannot be cancelled."""

    status, code, title = 409, "task-finished", "Task already finished"


class LeaseConflict(DomainError):
    """The lease is held but this call is not allowed now (revoked, already reported)."""

    status, code, title = 409, "lease-conflict", "Lease conflict"


class LeaseGone(DomainError):
    """The lease expired or a newer lease replaced it: the caller no longer holds the task."""

    status, code, title = 410, "lease-gone", "Lease expired"


class Busy(DomainError):
    """Contention the service gave up waiting out; the client should try again."""

    status, code, title = 503, "busy", "Busy"


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a rule (the fields are named in errors)."""

    status, code, title = 422, "validation-error", "Invalid request"


class TooLarge(DomainError):
    """A payload, state or batch beyond its configured limit."""

    status, code, title = 413, "too-large", "Content too large"


class Forbidden(DomainError):
    """The caller's token does not allow this (SPEC §9: roles)."""

    status, code, title = 403, "forbidden", "Forbidden"
