"""The committed OpenAPI document is exactly what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


async def test_committed_document_equals_served(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    committed = json.loads(COMMITTED.read_text())
    assert served == committed, "run `taskmill openapi --output openapi/openapi.json`"


def test_operation_ids_are_stable_and_errors_documented() -> None:
    doc = json.loads(COMMITTED.read_text())
    ids = {
        op["operationId"]
        for path in doc["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {
        "submit_task",
        "submit_tasks_batch",
        "get_task",
        "list_tasks",
        "lease_tasks",
        "heartbeat_lease",
        "complete_lease",
        "complete_leases_batch",
        "fail_lease",
        "release_lease",
        "update_lease_state",
        "put_group",
        "list_groups",
        "healthz",
        "readyz",
    } <= ids
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path in ("/healthz", "/readyz", "/groups") and method == "get":
                continue
            errors = {code for code in op["responses"] if code.startswith(("4", "5"))}
            assert errors, f"{method.upper()} {path} documents no error response"
            for code in errors:
                content = op["responses"][code]["content"]
                assert "application/problem+json" in content or code == "503", (path, code)
