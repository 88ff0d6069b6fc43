"""Children, the finalize phase, fail_fast and cascades at every depth (SPEC §5)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import get_task, lease, submit


async def complete(client: httpx.AsyncClient, grant: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await client.post(f"/leases/{grant['lease_id']}/complete", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_parent_waits_for_children_then_finalizes_with_its_state(
    client: httpx.AsyncClient,
) -> None:
    parent = await submit(client, type="upload", tags={"profile": "dr", "k": "parent"})
    (p,) = await lease(client, types=["upload"])
    kids = [
        await submit(client, type="part", parent_id=parent["id"], tags={"k": f"part{i}"})
        for i in range(3)
    ]
    assert kids[0]["tags"] == {"profile": "dr", "k": "part0"}  # inherited, child keys win
    waiting = await complete(client, p, state={"upload_id": "u-1"}, result="spawned")
    assert waiting["status"] == "waiting"
    assert waiting["children"] == {"total": 3, "live": 3, "completed": 0, "failed": 0}
    assert await lease(client, types=["upload"]) == []

    for grant in await lease(client, n=3, types=["part"]):
        await complete(client, grant)
    (fin,) = await lease(client, types=["upload"])
    assert fin["phase"] == "finalize"
    assert fin["task"]["id"] == parent["id"]
    assert fin["task"]["state"] == {"upload_id": "u-1"}
    done = await complete(client, fin, result="assembled")
    assert (done["status"], done["result"]) == ("completed", "assembled")
    assert done["children"] == {"total": 3, "live": 0, "completed": 3, "failed": 0}


async def test_children_only_for_a_running_parent(client: httpx.AsyncClient) -> None:
    parent = await submit(client, type="upload")
    r = await client.post("/tasks", json={"type": "part", "parent_id": parent["id"]})
    assert r.status_code == 409
    assert r.json()["parent_status"] == "pending"
    r = await client.post("/tasks", json={"type": "part", "parent_id": "0" * 26})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "parent_id"


async def test_fail_fast_cancels_siblings_and_fails_the_parent(client: httpx.AsyncClient) -> None:
    parent = await submit(client, type="upload")
    (p,) = await lease(client, types=["upload"])
    a = await submit(client, type="part", parent_id=parent["id"], retry={"max_attempts": 1})
    b = await submit(client, type="part", parent_id=parent["id"])
    c = await submit(client, type="part", parent_id=parent["id"])
    await complete(client, p)
    (ga,) = await lease(client, types=["part"])  # a
    (gb,) = await lease(client, types=["part"])  # b, running
    assert (ga["task"]["id"], gb["task"]["id"]) == (a["id"], b["id"])
    r = await client.post(f"/leases/{ga['lease_id']}/fail", json={"error": "boom"})
    assert r.json()["status"] == "failed"
    assert (await get_task(client, c["id"]))["status"] == "cancelled"
    assert (await get_task(client, b["id"]))["status"] == "cancelling"
    failed = await get_task(client, parent["id"])
    assert failed["status"] == "failed"
    hb = await client.post(f"/leases/{gb['lease_id']}/heartbeat", json={})
    assert hb.json()["cancel"]["reason"] == "cancelled"


async def test_without_fail_fast_the_parent_finalizes_after_a_failure(
    client: httpx.AsyncClient,
) -> None:
    parent = await submit(client, type="upload", fail_fast=False)
    (p,) = await lease(client, types=["upload"])
    await submit(client, type="part", parent_id=parent["id"], retry={"max_attempts": 1})
    await submit(client, type="part", parent_id=parent["id"])
    await complete(client, p)
    g1, g2 = await lease(client, n=2, types=["part"])
    await client.post(f"/leases/{g1['lease_id']}/fail", json={"error": "boom"})
    await complete(client, g2)
    (fin,) = await lease(client, types=["upload"])
    assert fin["phase"] == "finalize"
    assert (await get_task(client, parent["id"]))["children"]["failed"] == 1


async def test_supersede_cascades_to_every_depth(client: httpx.AsyncClient) -> None:
    key = {"type": "upload", "dedup_key": "file"}
    root = await submit(client, **key)
    (r,) = await lease(client, types=["upload"])
    child = await submit(client, type="part", parent_id=root["id"])
    pending_child = await submit(client, type="part", parent_id=root["id"])
    (c,) = await lease(client, types=["part"])
    assert c["task"]["id"] == child["id"]
    grandchild = await submit(client, type="chunk", parent_id=child["id"])
    (g,) = await lease(client, types=["chunk"])
    await complete(client, r)  # root waits for its children

    new = await client.post("/tasks", json={**key, "on_duplicate": "supersede"})
    replacement = new.json()["task"]
    # The waiting root is cancelled, not ended: its own on_cancel is still to run.
    old = await get_task(client, root["id"])
    assert (old["status"], old["phase"], old["cancel_reason"]) == (
        "cancelling",
        "cancel",
        "superseded",
    )
    assert (await get_task(client, pending_child["id"]))["status"] == "cancelled"
    assert (await get_task(client, child["id"]))["status"] == "cancelling"
    assert (await get_task(client, grandchild["id"]))["status"] == "cancelling"
    assert replacement["status"] == "blocked"
    assert replacement["blocked_on"] == root["id"]

    # The replacement waits for every descendant's on_cancel acknowledgement, then for
    # the root's own, which runs only once its children are over.
    for grant in (g, c):
        hb = await client.post(f"/leases/{grant['lease_id']}/heartbeat", json={})
        assert hb.json()["cancel"]["reason"] == "cancelled"
    await client.post(f"/leases/{g['lease_id']}/cancelled")
    assert await lease(client, types=["upload"]) == []
    await client.post(f"/leases/{c['lease_id']}/cancelled")
    assert (await get_task(client, replacement["id"]))["status"] == "blocked"
    (hook,) = await lease(client, types=["upload"])
    assert (hook["task"]["id"], hook["phase"]) == (root["id"], "cancel")
    assert hook["cancel"] == {"reason": "superseded", "superseded_by": replacement["id"]}
    assert (await client.post(f"/leases/{hook['lease_id']}/cancelled")).status_code == 200
    assert (await get_task(client, root["id"]))["status"] == "superseded"
    assert (await get_task(client, replacement["id"]))["status"] == "pending"
    (again,) = await lease(client, types=["upload"])
    assert again["task"]["id"] == replacement["id"]


async def test_cancel_task_cascades_and_is_idempotent(client: httpx.AsyncClient) -> None:
    parent = await submit(client, type="upload")
    (p,) = await lease(client, types=["upload"])
    kid = await submit(client, type="part", parent_id=parent["id"])
    r = await client.post(f"/tasks/{parent['id']}/cancel")
    assert r.json()["status"] == "cancelling"
    assert (await get_task(client, kid["id"]))["status"] == "cancelled"
    again = await client.post(f"/tasks/{parent['id']}/cancel")
    assert again.status_code == 200
    await client.post(f"/leases/{p['lease_id']}/cancelled")
    assert (await get_task(client, parent["id"]))["status"] == "cancelled"
    done = await submit(client, type="x")
    (g,) = await lease(client, types=["x"])
    await complete(client, g)
    r = await client.post(f"/tasks/{done['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["task_status"] == "completed"


async def test_a_parent_whose_children_ended_first_still_finalizes(
    client: httpx.AsyncClient,
) -> None:
    parent = await submit(client, type="upload")
    (p,) = await lease(client, types=["upload"])
    await submit(client, type="part", parent_id=parent["id"])
    (c,) = await lease(client, types=["part"])
    await complete(client, c)  # the child ends before its parent reports
    reported = await complete(client, p, state={"upload_id": "u-2"})
    assert reported["status"] == "pending"
    (fin,) = await lease(client, types=["upload"])
    assert (fin["phase"], fin["task"]["state"]) == ("finalize", {"upload_id": "u-2"})
    done = await complete(client, fin, result="assembled")
    assert (done["status"], done["result"]) == ("completed", "assembled")
