"""The role table against the real SDK worker: with auth on, the README's example worker
runs on a worker-role token (lease, heartbeat, spawn children, read them at finalize) while
the producer's token submits; the compose file runs exactly this."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from tests.conftest import ServerFactory
from tests.helpers import eventually

ROOT = Path(__file__).parents[2]
TOKENS = {"producer": "producer-token-0123456789", "worker": "worker-token-0123456789"}


async def test_example_worker_on_a_worker_token(make_server: ServerFactory) -> None:
    server = await make_server(tokens=",".join(f"{k}={v}" for k, v in TOKENS.items()))
    client = server.client
    producer = {"authorization": f"Bearer {TOKENS['producer']}"}
    r = await client.post(
        "/tasks",
        json={"type": "album", "payload": {"images": ["a.png", "b.png"]}},
        headers=producer,
    )
    assert r.status_code == 201, r.text
    album_id = r.json()["task"]["id"]
    env = {**os.environ, "TASKMILL_URL": server.url, "TASKMILL_TOKEN": TOKENS["worker"]}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "worker", "examples.worker:worker", "--log-level", "warning",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip

    async def album() -> dict[str, object]:
        out: dict[str, object] = (await client.get(f"/tasks/{album_id}", headers=producer)).json()
        return out

    try:
        done = await eventually(album, lambda t: t["status"] in ("completed", "failed"), 30)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # End the worker's abandoned long poll, as SIGTERM does for a real server.
    server.uvicorn.config.app.state.taskmill.drain()  # type: ignore[attr-defined]
    assert done["status"] == "completed", (done, out.decode())
    assert done["result"] == {"thumbnails": 4}
    # No refused call (as a status of its own: the server's port may contain "403").
    assert not re.search(rb"\b40[13]\b", out), out.decode()
