"""The real service under uvicorn, in its own process, as it runs in production.

A separate process matters: in-process, the server and the benchmark's client would
share one event loop and one core, and the HTTP figures would mostly measure that.

A server runs the installed taskmill, or that of a checkout (another version's work
tree, ``taskmill bench --compare --baseline``) on the same database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

import app

#: How long the server may take to answer ``/healthz`` after being started.
STARTUP_SECONDS = 30.0


class ServerStartError(RuntimeError):
    """A server did not start, or would not run the code or the schema it was meant to."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports of 127.0.0.1 that nothing listens on right now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        # All bound at once, so the kernel cannot hand out one port twice.
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@dataclass(frozen=True)
class ServerProcess:
    """A running server: where it listens, its process id (for its CPU counters) and
    the ``app`` package it imports (checked before it was started)."""

    url: str
    pid: int
    app: Path


@contextmanager
def uvicorn_server(database_url: str) -> Iterator[str]:
    """Run ``app.main:create_app_from_env`` under uvicorn; yield its base URL."""
    with uvicorn_processes(database_url, [None]) as (server,):
        yield server.url


@contextmanager
def uvicorn_processes(
    database_url: str, checkouts: Sequence[Path | None]
) -> Iterator[list[ServerProcess]]:
    """Run one server of ``app.main:create_app_from_env`` under uvicorn per entry of
    ``checkouts``, each its own process on its own port: ``None`` runs the installed
    taskmill, a path the taskmill of that checkout. Yield them, in that order, once all
    of them answer and find the database's schema at their newest migration.

    They are started together: each takes a second or two to import and start. The
    environment is the caller's (so any ``TASKMILL_*`` settings apply to the servers as
    to the in-process container) with the database replaced by ``database_url``.

    Raises :class:`ServerStartError`, naming the checkout, if a server would import
    another ``app`` than its own, does not start, or finds the schema not current (a
    checkout with other migrations than the code that migrated the database).
    """
    with ExitStack() as stack:
        started = []
        origins: dict[Path | None, Path] = {}
        for checkout, port in zip(checkouts, free_ports(len(checkouts)), strict=True):
            env = _environment(database_url, checkout)
            if checkout not in origins:
                origins[checkout] = _imported_app(env, checkout)
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app_from_env",
                "--factory",
                "--host=127.0.0.1",
                f"--port={port}",
                "--log-level=warning",
                "--no-access-log",
            ]
            log = stack.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(
                command,
                env=env,
                cwd=checkout,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, process)
            started.append((process, f"http://127.0.0.1:{port}", log, checkout))
        for process, url, log, checkout in started:
            _wait_ready(process, url, log, _label(checkout))
        yield [
            ServerProcess(url, process.pid, origins[checkout])
            for process, url, _, checkout in started
        ]


def _label(checkout: Path | None) -> str:
    return "taskmill" if checkout is None else f"taskmill at {checkout}"


def _environment(database_url: str, checkout: Path | None) -> dict[str, str]:
    """The server's environment: the caller's, on ``database_url``, importing the
    checkout's packages (when given) instead of the installed ones."""
    env = dict(os.environ, TASKMILL_DATABASE_URL=database_url)
    # DATABASE_URL takes precedence over TASKMILL_DATABASE_URL in the settings and
    # points at the server's maintenance database, not the scratch one.
    env.pop("DATABASE_URL", None)
    if checkout is not None:
        # First on the path, so its `app` and `migrations` shadow the installed ones:
        # the editable install's import hook answers only for what sys.path lacks.
        inherited = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(checkout) + (os.pathsep + inherited if inherited else "")
    return env


def _imported_app(env: dict[str, str], checkout: Path | None) -> Path:
    """The ``app`` package a server with ``env`` and working directory ``checkout``
    imports; :class:`ServerStartError` unless it is the checkout's own, or with no
    checkout the bench's own (what migrated the database)."""
    found = subprocess.run(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise ServerStartError(f"{_label(checkout)}: cannot import app:\n{found.stderr[-2000:]}")
    package = Path(found.stdout.strip()).resolve().parent
    expected = Path(app.__file__).resolve().parent if checkout is None else checkout / "app"
    if package != expected.resolve():
        raise ServerStartError(
            f"{_label(checkout)} would import app from {package}, not from {expected}"
        )
    return package


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # uvicorn shuts down gracefully on SIGTERM
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: IO[bytes], label: str) -> None:
    """Return once ``/healthz`` answers (uvicorn listens only after the app's startup)
    and ``/readyz`` finds the schema at the server's newest migration."""
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
        while True:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                raise ServerStartError(
                    f"{label} did not start: uvicorn exited with {process.returncode}:\n{output}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{label} did not start: no answer on /healthz within {STARTUP_SECONDS} s"
                )
            time.sleep(0.1)
        # The schema was migrated by the installed code: another version's server must
        # know exactly those migrations, or it would run against tables it does not know.
        ready = client.get("/readyz", timeout=10.0)
        if ready.status_code != 200:
            raise ServerStartError(
                f"{label} does not take this database's schema (a checkout must ship the "
                f"same migrations as the installed taskmill): /readyz answered "
                f"{ready.status_code} {ready.text}"
            )
