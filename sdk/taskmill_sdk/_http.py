"""HTTP with retries of transient failures, shared by the clients and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ._errors import TaskmillError, Unavailable, error_from_response

log = logging.getLogger("taskmill_sdk")

DEFAULT_URL = "http://127.0.0.1:8000"

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


def _retryable(exc: BaseException | None, status: int | None, idempotent: bool) -> bool:
    if exc is not None:
        if isinstance(exc, _NOT_SENT):
            return True
        return idempotent and isinstance(exc, httpx.TransportError)
    if status in (429, 503):
        return True
    return idempotent and status in (500, 502, 504)


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _error(response: httpx.Response) -> TaskmillError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_response(response.status_code, body, response.text)


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    raise _error(response)


def _give_up(exc: BaseException | None, response: httpx.Response | None) -> TaskmillError:
    if response is not None:
        return _error(response)
    return Unavailable(f"taskmill unreachable: {exc!r}")


def _headers(token: str | None) -> dict[str, str]:
    headers = {"user-agent": "taskmill-sdk/0.1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


class AsyncHTTP:
    """An ``httpx.AsyncClient`` plus the retry loop and problem+json mapping."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        idempotent: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        give_up: asyncio.Event | None = None,
    ) -> httpx.Response:
        """Send, retrying transient failures; raise a :class:`TaskmillError` on an error.

        ``give_up``: once set, no further try is made (the wait between tries ends at
        once with :class:`Unavailable`); a request already sent still gets its answer.
        """
        policy = retry or self.retry
        loop = asyncio.get_running_loop()
        start = loop.time()
        attempt = 0
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        while True:
            attempt += 1
            exc: BaseException | None = None
            response: httpx.Response | None = None
            try:
                response = await self.client.request(
                    method, path, json=json, params=params, **extra
                )
            except httpx.TransportError as err:
                exc = err
            status = response.status_code if response is not None else None
            if response is not None and status is not None and status < 400:
                return response
            if not _retryable(exc, status, idempotent):
                if response is not None:
                    return _check(response)
                raise Unavailable(f"taskmill request failed: {exc!r}") from exc
            delay = _retry_after(response) or policy.delay(attempt)
            out_of_tries = policy.max_attempts is not None and attempt >= policy.max_attempts
            if out_of_tries or loop.time() - start + delay > policy.deadline_seconds:
                raise _give_up(exc, response) from exc
            log.debug("%s %s: %s; retry in %.2fs", method, path, exc or status, delay)
            if give_up is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(give_up.wait(), delay)
                if give_up.is_set():
                    raise _give_up(exc, response) from exc

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()


class SyncHTTP:
    """An ``httpx.Client`` plus the retry loop and problem+json mapping."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.client = httpx.Client(
            base_url=url.rstrip("/"),
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        idempotent: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send, retrying transient failures; raise a :class:`TaskmillError` on an error."""
        policy = retry or self.retry
        start = time.monotonic()
        attempt = 0
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        while True:
            attempt += 1
            exc: BaseException | None = None
            response: httpx.Response | None = None
            try:
                response = self.client.request(method, path, json=json, params=params, **extra)
            except httpx.TransportError as err:
                exc = err
            status = response.status_code if response is not None else None
            if response is not None and status is not None and status < 400:
                return response
            if not _retryable(exc, status, idempotent):
                if response is not None:
                    return _check(response)
                raise Unavailable(f"taskmill request failed: {exc!r}") from exc
            delay = _retry_after(response) or policy.delay(attempt)
            out_of_tries = policy.max_attempts is not None and attempt >= policy.max_attempts
            if out_of_tries or time.monotonic() - start + delay > policy.deadline_seconds:
                raise _give_up(exc, response) from exc
            log.debug("%s %s: %s; retry in %.2fs", method, path, exc or status, delay)
            time.sleep(delay)

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
