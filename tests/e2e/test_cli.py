"""`taskmill worker`, `submit` and `tasks` against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from tests.conftest import Server
from tests.helpers import eventually, get_task, submit

ROOT = Path(__file__).parents[2]


async def _cli(*args: str, input: str | None = None) -> tuple[int, str]:
    # The blocking client runs in a thread: the server shares this test's event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), input=input)
    return result.exit_code, result.output


async def test_submit_one_and_list_as_table(server: Server) -> None:
    code, out = await _cli(
        "submit", "resize", '{"image": "a.png"}', "--tag", "team=media", "--tag", "dst=eu",
        "--dedup-key", "a.png", "--priority", "7", "--url", server.url,
    )  # fmt: skip
    assert code == 0, out
    outcome, task_id, status = out.split()
    assert (outcome, status) == ("created", "pending")
    task = await get_task(server.client, task_id)
    assert task["payload"] == {"image": "a.png"}
    assert task["tags"] == {"team": "media", "dst": "eu"} and task["priority"] == 7

    code, out = await _cli("submit", "resize", "--dedup-key", "a.png", "--url", server.url)
    assert code == 0 and out.split()[:2] == ["deduplicated", task_id]
    await submit(server.client, type="resize", tags={"team": "ops"})

    code, out = await _cli(
        "tasks", "--tag", "team=media", "--status", "pending", "--url", server.url
    )
    assert code == 0, out
    assert task_id in out and "team=media" in out and "1 task(s)" in out
    code, out = await _cli("tasks", "--type", "resize", "--json", "--url", server.url)
    assert code == 0 and len(out.splitlines()) == 2


async def test_submit_errors_are_explained(server: Server) -> None:
    code, out = await _cli("submit", "bad type!", "--priority", "300", "--url", server.url)
    assert code == 1
    assert "priority" in out and "type" in out
    code, out = await _cli("submit", "x", "{not json", "--url", server.url)
    assert code == 2 and "not JSON" in out


async def test_bulk_submit_from_json_lines(server: Server, tmp_path: Path) -> None:
    lines = [
        json.dumps({"type": "bulk", "payload": i, "dedup_key": str(i % 40)}) for i in range(50)
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    code, out = await _cli("submit", "--file", str(path), "--batch-size", "15", "--url", server.url)
    assert code == 0, out
    assert "submitted: 40 created, 10 deduplicated" in out
    code, out = await _cli(
        "submit", "--file", "-", "--json", "--url", server.url, input=lines[0] + "\n"
    )
    assert code == 0 and json.loads(out) == {"deduplicated": 1}
    r = await server.client.get("/tasks", params={"type": "bulk", "limit": 1000})
    assert len(r.json()["tasks"]) == 40


async def _run_worker(target: str, server: Server) -> asyncio.subprocess.Process:
    env = {**os.environ, "TASKMILL_URL": server.url}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "worker", target, "--log-level", "warning",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_worker_command_stops_gracefully_on_sigterm(server: Server) -> None:
    polite = await submit(server.client, type="polite")
    stubborn = await submit(server.client, type="stubborn")
    proc = await _run_worker("tests.e2e.cli_worker:worker", server)
    try:
        for t in (polite, stubborn):
            await eventually(
                lambda t=t: get_task(server.client, t["id"]),
                lambda task: task["status"] == "running",
                timeout=30,
            )
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    finished = await get_task(server.client, polite["id"])
    assert finished["status"] == "completed" and finished["result"] == "finished on stop"
    released = await get_task(server.client, stubborn["id"])
    assert released["status"] == "pending" and released["attempt"] == 0


async def test_the_readme_example_worker(server: Server) -> None:
    code, out = await _cli("submit", "album", '{"images": ["a.png", "b.png"]}', "--url", server.url)
    assert code == 0, out
    album_id = out.split()[1]
    code, out = await _cli("submit", "thumbnail", "{}", "--url", server.url)
    bad_id = out.split()[1]
    proc = await _run_worker("examples.worker:worker", server)
    try:
        album = await eventually(
            lambda: get_task(server.client, album_id),
            lambda t: t["status"] == "completed",
            timeout=30,
        )
        bad = await eventually(
            lambda: get_task(server.client, bad_id), lambda t: t["status"] == "failed"
        )
        # Idle: a second signal skips waiting for the long poll in flight (two different
        # ones: a second SIGTERM pending before the first is handled would merge with it).
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    # The abandoned long poll would hold the server's stop for its wait_seconds: end it as
    # SIGTERM does in production (the server does not notice a client that went away).
    server.uvicorn.config.app.state.taskmill.drain()  # type: ignore[attr-defined]
    assert album["result"] == {"thumbnails": 4}
    assert bad["error"]["message"] == "payload.image is required"
