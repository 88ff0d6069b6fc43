"""taskmill_sdk: the worker SDK and producer client of the taskmill task queue.

- :class:`Worker` runs handlers for leased tasks (concurrently, with heartbeats,
  progress, state, cancellation hooks, children and graceful stop).
- :class:`Client` / :class:`AsyncClient` submit, read, query and aggregate tasks, count
  them by tag value, read the snapshot and follow the event stream.
- Errors are :class:`TaskmillError` subclasses mapped from the server's problem+json.
"""

from ._client import AsyncClient, Client, task_spec
from ._context import (
    CancelRequest,
    PermanentError,
    Release,
    Retry,
    TaskCancelled,
    TaskContext,
)
from ._errors import (
    BadRequest,
    Conflict,
    DuplicateRejected,
    FieldError,
    Forbidden,
    LeaseConflict,
    LeaseGone,
    LeaseLost,
    NotFound,
    ServerError,
    TaskmillError,
    TooLarge,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from ._http import RetryPolicy
from ._models import (
    AggregateGroup,
    Event,
    SubmitResult,
    TagKeys,
    TagValue,
    TagValues,
    Task,
    TaskPage,
)
from ._worker import Handler, Worker, run_workers

__version__ = "0.1.0"

__all__ = [
    "AggregateGroup",
    "AsyncClient",
    "BadRequest",
    "CancelRequest",
    "Client",
    "Conflict",
    "DuplicateRejected",
    "Event",
    "FieldError",
    "Forbidden",
    "Handler",
    "LeaseConflict",
    "LeaseGone",
    "LeaseLost",
    "NotFound",
    "PermanentError",
    "Release",
    "Retry",
    "RetryPolicy",
    "ServerError",
    "SubmitResult",
    "TagKeys",
    "TagValue",
    "TagValues",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskPage",
    "TaskmillError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "Worker",
    "run_workers",
    "task_spec",
]
