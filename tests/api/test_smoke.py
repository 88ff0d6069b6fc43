"""The basic lifecycle through HTTP: submit, lease, complete, read."""

from __future__ import annotations

import httpx

from tests.helpers import get_task, lease, submit


async def test_submit_lease_complete(client: httpx.AsyncClient) -> None:
    task = await submit(client, payload={"n": 1}, tags={"profile": "dr"})
    assert task["status"] == "pending"
    (grant,) = await lease(client)
    assert grant["task"]["id"] == task["id"]
    assert grant["task"]["payload"] == {"n": 1}
    assert grant["task"]["attempt"] == 1
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json={"result": {"ok": True}})
    assert r.status_code == 200, r.text
    done = await get_task(client, task["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"ok": True}
    assert done["lease"] is None
