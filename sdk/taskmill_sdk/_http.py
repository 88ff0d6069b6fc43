"""HTTP with retries of transient failures, shared by the clients and the worker.

A request is described once, as a :class:`Call`; :class:`Tries` makes every retry
decision; :class:`SyncHTTP` and :class:`AsyncHTTP` are the two loops that send a call
and wait between tries as they are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar
from urllib.parse import quote

import httpx

from ._errors import TaskmillError, Unavailable, error_from_response

log = logging.getLogger("taskmill_sdk")

DEFAULT_URL = "http://127.0.0.1:8000"

T = TypeVar("T")
C = TypeVar("C", httpx.Client, httpx.AsyncClient)

#: Query parameters, in order, names repeated for lists (``?status=a&status=b``).
Params = Sequence[tuple[str, str | int | float | bool | None]]

# Failures where the request certainly never reached the server: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: exponential backoff with jitter.

    Retried: connection failures (the request never left), ``503`` (the server changed
    nothing) and ``429`` always; ``500``/``502``/``504`` and connections lost mid-request
    only for calls that are safe to repeat (reads, the lease protocol, submits that carry
    a ``dedup_key`` with ``on_duplicate="skip"``).

    Attributes:
        max_attempts: tries in all, the first included (``None``: until ``deadline_seconds``).
        deadline_seconds: give up once this long has passed since the first try.
        base_seconds: the first delay; it doubles each time up to ``max_seconds``.
        max_seconds: the longest delay between two tries.
    """

    max_attempts: int | None = 10
    deadline_seconds: float = 60.0
    base_seconds: float = 0.1
    max_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1`` ("equal jitter": 50-100 %)."""
        full = min(self.max_seconds, self.base_seconds * float(2 ** max(attempt - 1, 0)))
        return full * (0.5 + random.random() / 2)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer: what either loop sends.

    ``parse`` turns the JSON of a successful answer into the caller's value;
    ``idempotent`` says whether a try that may have reached the server can be repeated.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Params = ()
    idempotent: bool = True


def segment(value: str) -> str:
    """``value`` as one path segment (a group name may hold ``/``, ``?`` or ``#``)."""
    return quote(value, safe="")


def ignore(body: Any) -> None:
    """The parser of a call whose answer the caller does not need."""
    return None


def json_object(body: Any) -> dict[str, Any]:
    """The parser of a call whose answer is handed over as the JSON object it is."""
    out: dict[str, Any] = body
    return out


def _retryable(outcome: httpx.Response | httpx.TransportError, idempotent: bool) -> bool:
    if isinstance(outcome, httpx.TransportError):
        return isinstance(outcome, _NOT_SENT) or idempotent
    if outcome.status_code in (429, 503):
        return True
    return idempotent and outcome.status_code in (500, 502, 504)


def _retry_after(outcome: httpx.Response | httpx.TransportError) -> float | None:
    if isinstance(outcome, httpx.TransportError):
        return None
    value = outcome.headers.get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def error_of(response: httpx.Response) -> TaskmillError:
    """The exception for an error answer (its body read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_response(response.status_code, body, response.text)


class Tries:
    """Every retry decision of one call, for both loops: they only send and wait.

    :meth:`judge` takes what a try gave and answers the response to keep, or how long to
    wait before the next try; it raises the call's error once there is to be no other.
    """

    def __init__(self, call: Call[Any], policy: RetryPolicy) -> None:
        self._call = call
        self._policy = policy
        self._start = time.monotonic()
        self._attempt = 0
        self._last: httpx.Response | httpx.TransportError | None = None

    def judge(self, outcome: httpx.Response | httpx.TransportError) -> httpx.Response | float:
        """The answer to keep, or the seconds to wait before trying again."""
        self._attempt += 1
        self._last = outcome
        if isinstance(outcome, httpx.Response) and not outcome.is_error:
            return outcome
        if not _retryable(outcome, self._call.idempotent):
            self.give_up("taskmill request failed")
        delay = _retry_after(outcome) or self._policy.delay(self._attempt)
        limit = self._policy.max_attempts
        out_of_tries = limit is not None and self._attempt >= limit
        if out_of_tries or time.monotonic() - self._start + delay > self._policy.deadline_seconds:
            self.give_up()
        failure = outcome if isinstance(outcome, httpx.TransportError) else outcome.status_code
        log.debug("%s %s: %r; retry in %.2fs", self._call.method, self._call.path, failure, delay)
        return delay

    def give_up(self, unsent: str = "taskmill unreachable") -> NoReturn:
        """Raise the error of the last try: its answer's, or ``unsent`` without one."""
        last = self._last
        if isinstance(last, httpx.Response):
            raise error_of(last)
        raise Unavailable(f"{unsent}: {last!r}") from last


class _HTTP(Generic[C]):
    # What the two loops share: the httpx client, the default policy, building requests.

    def __init__(self, client: C, retry: RetryPolicy | None = None) -> None:
        self.client: C = client
        self.retry = retry or RetryPolicy()

    def _start(self, call: Call[Any], retry: RetryPolicy | None) -> tuple[httpx.Request, Tries]:
        request = self.client.build_request(
            call.method, call.path, json=call.json, params=list(call.params)
        )
        return request, Tries(call, retry or self.retry)


def client_options(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """The settings of either httpx client: base URL, headers (the token), timeout."""
    headers = {"user-agent": "taskmill-sdk/0.1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": timeout}


class SyncHTTP(_HTTP[httpx.Client]):
    """An ``httpx.Client`` plus the blocking loop of :class:`Tries`."""

    def send(self, call: Call[T], *, retry: RetryPolicy | None = None) -> T:
        """Send, retrying transient failures; raise a :class:`TaskmillError` on an error."""
        request, tries = self._start(call, retry)
        while True:
            try:
                verdict = tries.judge(self.client.send(request))
            except httpx.TransportError as exc:
                verdict = tries.judge(exc)
            if isinstance(verdict, httpx.Response):
                return call.parse(verdict.json())
            time.sleep(verdict)

    def close(self) -> None:
        """Close the connections."""
        self.client.close()


class AsyncHTTP(_HTTP[httpx.AsyncClient]):
    """An ``httpx.AsyncClient`` plus the asyncio loop of :class:`Tries`.

    ``give_up``: once set, no call makes another try (see :meth:`send`).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        retry: RetryPolicy | None = None,
        *,
        give_up: asyncio.Event | None = None,
    ) -> None:
        super().__init__(client, retry)
        self.give_up = give_up

    async def send(
        self,
        call: Call[T],
        *,
        retry: RetryPolicy | None = None,
        give_up: asyncio.Event | None = None,
    ) -> T:
        """Send, retrying transient failures; raise a :class:`TaskmillError` on an error.

        ``give_up`` (default: the one this was made with): once set, no further try is
        made, and a wait between tries ends at once with the last try's error; the first
        try is always made, and a try already sent still gets its answer.
        """
        request, tries = self._start(call, retry)
        stop = give_up or self.give_up
        while True:
            try:
                verdict = tries.judge(await self.client.send(request))
            except httpx.TransportError as exc:
                verdict = tries.judge(exc)
            if isinstance(verdict, httpx.Response):
                return call.parse(verdict.json())
            if not await _pause(verdict, stop):
                tries.give_up()

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()


async def _pause(seconds: float, stop: asyncio.Event | None) -> bool:
    # Wait between two tries; False when `stop` was set first (or already).
    if stop is None:
        await asyncio.sleep(seconds)
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return not stop.is_set()
