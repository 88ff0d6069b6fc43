"""A client generated from openapi/openapi.json works against a running server."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Server

OPENAPI = Path(__file__).parents[2] / "openapi" / "openapi.json"


async def _generate(out: Path) -> str:
    config = out.parent / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: nothing outside the venv
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openapi_python_client", "generate",
        "--path", str(OPENAPI), "--meta", "none", "--output-path", str(out),
        "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = output.decode()
    assert proc.returncode == 0, text
    return text


async def test_generated_python_client_submits_reads_leases_completes(
    server: Server, tmp_path: Path
) -> None:
    output = await _generate(tmp_path / "taskmill_generated")
    assert "warning" not in output.lower(), output

    sys.path.insert(0, str(tmp_path))
    try:
        gen: Any = importlib.import_module("taskmill_generated")
        tasks: Any = importlib.import_module("taskmill_generated.api.tasks")
        leases: Any = importlib.import_module("taskmill_generated.api.leases")
        models: Any = importlib.import_module("taskmill_generated.models")
        importlib.import_module("taskmill_generated.api.tasks.submit_task")
        importlib.import_module("taskmill_generated.api.tasks.get_task")
        importlib.import_module("taskmill_generated.api.leases.lease_tasks")
        importlib.import_module("taskmill_generated.api.leases.complete_lease")
    finally:
        sys.path.remove(str(tmp_path))

    client = gen.Client(base_url=server.url)
    async with client:
        body = models.TaskSubmit(type_="generated", payload={"n": 1}, priority=3)
        submitted = await tasks.submit_task.asyncio_detailed(client=client, body=body)
        assert submitted.status_code == 201
        task_id = submitted.parsed.task.id

        read = await tasks.get_task.asyncio(task_id, client=client)
        assert isinstance(read, models.Task)
        assert read.status == models.TaskStatus.PENDING and read.priority == 3

        missing = await tasks.get_task.asyncio_detailed("nope", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)

        granted = await leases.lease_tasks.asyncio(
            client=client, body=models.LeaseRequest(worker_id="gen", max_tasks=1)
        )
        (lease,) = granted.leases
        assert lease.task.id == task_id

        done = await leases.complete_lease.asyncio(
            lease.lease_id, client=client, body=models.Complete(result={"ok": True})
        )
        assert isinstance(done, models.Task)
        assert done.status == models.TaskStatus.COMPLETED
        final = await tasks.get_task.asyncio(task_id, client=client)
        assert final.result == {"ok": True}
