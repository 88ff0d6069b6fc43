"""Schemathesis (the version pinned by pyproject's dev extra) against the live app, checking
every answer against openapi/openapi.json.

Unlike tests/e2e/test_fuzz.py (a separate server process, no data checks), this runs the
pytest ``server`` fixtures' in-process app and turns on the data check that holds for this
document: ``negative_data_rejection`` (what the schema forbids is refused with a 4xx),
besides the response checks (no 5xx; status, content type, headers and body as
documented). The app gets an admin token: the document declares bearer auth on every
operation but the health checks, so a request without ``Authorization`` is one the schema
forbids, and only a server with tokens refuses it (without tokens it serves loopback, as
it should). ``positive_data_acceptance`` stays off: JSON Schema cannot say "a lease this
server granted", "a task that exists" or "no NUL characters", so valid shapes with made-up
ids or NULs in free-form maps are rightly 404/409/410/422.

Bounded: a fixed seed, few examples per operation (TASKMILL_SCHEMATHESIS_SEED and
TASKMILL_SCHEMATHESIS_EXAMPLES explore further), long polls capped at half a second.
``GET /events`` is left out: it is an endless stream (every request would run to the
request timeout); tests/e2e/test_events.py and the TypeScript client test read it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from tests.conftest import ServerFactory

DOCUMENT = Path(__file__).parents[2] / "openapi" / "openapi.json"
ADMIN = "schemathesis-admin-token-0123456789"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


async def test_schemathesis_finds_no_nonconformance(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = await make_server(max_wait_seconds=0.5, tokens=f"admin={ADMIN}")
    seed = os.environ.get("TASKMILL_SCHEMATHESIS_SEED", "7")
    examples = os.environ.get("TASKMILL_SCHEMATHESIS_EXAMPLES", "6")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", str(DOCUMENT),
        "--url", server.url,
        "--header", f"Authorization: Bearer {ADMIN}",
        "--checks", ",".join(CHECKS),
        "--exclude-path", "/events",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", examples,
        "--seed", seed,
        # one worker: hypothesis' lambda introspection is not thread-safe
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
        "--output-truncate", "false",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=150)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-30000:]
    # Every operation but the stream was selected and tested.
    operations = sum(
        1
        for item in json.loads(DOCUMENT.read_text())["paths"].values()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    )
    assert re.search(rf"Selected: {operations - 1}/{operations}\b", report), report[-5000:]
    assert re.search(rf"Tested: {operations - 1}\b", report), report[-5000:]
