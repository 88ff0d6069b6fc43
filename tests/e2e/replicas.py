"""Real server processes for the fault tests: `python -m app serve` as an operator runs it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

#: Fast sweeps and poll fallbacks, so expiries and recoveries show within seconds.
FAST = {
    "TASKMILL_SWEEP_INTERVAL_SECONDS": "0.2",
    "TASKMILL_POLL_FALLBACK_SECONDS": "0.5",
    "TASKMILL_DB_POOL_SIZE": "5",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    """One `taskmill serve` process."""

    proc: asyncio.subprocess.Process
    url: str
    log: Path

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit; kill -9 if it does not come within ``timeout``."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            raise


async def start_replica(
    database_url: str,
    log_dir: Path,
    *,
    name: str = "replica",
    env: dict[str, str] | None = None,
    args: Sequence[str] = ("--no-migrate",),
    prelude: str | None = None,
    ready_timeout: float = 60,
) -> Replica:
    """Start `python -m app serve` on a free port of 127.0.0.1 and wait until /readyz is 200.

    ``prelude`` is Python run in the server process before the app is imported (e.g. to
    move its clock).
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    full_env.update(FAST)
    full_env["DATABASE_URL"] = database_url
    full_env.update(env or {})
    command = [*args, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if prelude is None:
        argv = [sys.executable, "-m", "app", "serve", *command]
    else:
        launcher = f"{prelude}\nimport runpy\nrunpy.run_module('app', run_name='__main__')"
        argv = [sys.executable, "-c", launcher, "serve", *command]
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=full_env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    replica = Replica(proc, f"http://127.0.0.1:{port}", log)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as client:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{replica.output()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return replica
            if loop.time() > deadline:
                replica.kill()
                raise TimeoutError(f"{name} not ready in {ready_timeout}s:\n{replica.output()}")
            await asyncio.sleep(0.1)
