"""The real service under uvicorn, in its own process, as it runs in production.

A separate process matters: in-process, the server and the benchmark's client would
share one event loop and one core, and the HTTP figures would mostly measure that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx

#: How long the server may take to answer ``/healthz`` after being started.
STARTUP_SECONDS = 30.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def uvicorn_server(database_url: str) -> Iterator[str]:
    """Run ``app.main:create_app_from_env`` under uvicorn; yield its base URL.

    The environment is the caller's (so any ``TASKMILL_*`` settings apply to the server
    as to the in-process container) with the database replaced by ``database_url``.
    """
    env = dict(os.environ, TASKMILL_DATABASE_URL=database_url)
    # DATABASE_URL takes precedence over TASKMILL_DATABASE_URL in the settings and
    # points at the server's maintenance database, not the scratch one.
    env.pop("DATABASE_URL", None)
    port = free_port()
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
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_healthy(process, url, log)
            yield url
        finally:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
    """Return once ``/healthz`` answers (uvicorn listens only after the app's startup)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
        while True:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{output}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not answer /healthz within {STARTUP_SECONDS} s")
            time.sleep(0.1)
