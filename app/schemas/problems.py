"""RFC 9457 problem details."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict, JsonValue

from .common import Out, absent_fields, absent_if_none
from .tasks import CancelReason, Status

#: The ``code`` of every problem the service answers; its ``type`` is
#: ``urn:taskmill:problem:<code>`` (a test keeps this list equal to the codes raised).
ProblemCode = Literal[
    "bad-request",
    "unauthorized",
    "forbidden",
    "not-found",
    "method-not-allowed",
    "duplicate-rejected",
    "parent-not-running",
    "task-finished",
    "lease-conflict",
    "lease-gone",
    "too-large",
    "validation-error",
    "busy",
    "unavailable",
    "internal-error",
]
PROBLEM_TYPE_PREFIX = "urn:taskmill:problem:"


class FieldError(Out):
    """One invalid field: where it is and what is wrong."""

    field: str
    message: str
    type: str


def _problem_schema(schema: JsonDict, cls: type[BaseModel]) -> None:
    """``type`` as the enum of URNs (the wire value; the codes are the Literal above)."""
    absent_fields(schema, cls)
    properties = schema["properties"]
    assert isinstance(properties, dict)
    urns: list[JsonValue] = [PROBLEM_TYPE_PREFIX + c for c in get_args(ProblemCode)]
    properties["type"] = {"type": "string", "enum": urns, "title": "Type"}


class Problem(Out):
    """``application/problem+json`` body of every error answer.

    ``errors`` comes with a 422 (each offending field), ``existing_task_id`` with a
    refused duplicate, ``task_status`` (with ``cancel_reason`` and ``superseded_by`` when
    set) with a conflict about a task's state; none is sent otherwise.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_problem_schema)

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = absent_if_none()
    existing_task_id: str | None = absent_if_none("duplicate-rejected: the holder of the key")
    task_status: Status | None = absent_if_none("a 409 or 410 about a task: its status now")
    parent_status: Status | None = absent_if_none("parent-not-running: the parent's status")
    cancel_reason: CancelReason | None = absent_if_none("…and why it is being cancelled")
    superseded_by: str | None = absent_if_none("…and the task that replaced it")


class ValidationProblem(Out):
    """The problem of a 422: ``errors`` names every offending field."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_problem_schema)

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError]
