"""Schemathesis against the committed OpenAPI document and a real server process.

Every operation is fuzzed (examples, boundary coverage, random, and stateful sequences that
follow the document's links) with auth on: no answer may be a 5xx, and every answer must
conform to the document (status code, content type, headers, body schema; 401 without a
token). Bounded: few examples per operation, one fixed seed (set TASKMILL_FUZZ_SEED to
explore others, TASKMILL_FUZZ_EXAMPLES for more cases), long polls capped at half a second.

Not checked: whether the server accepts everything the schema allows and refuses everything
it does not (schemathesis' positive/negative data checks). JSON Schema cannot say "no NUL
characters", "no lone surrogates", "a cursor this server issued" or "a lease that is still
held", so those answers are correct 422/404/409/410s that the checks would count as misses.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.e2e.replicas import start_replica

DOCUMENT = Path(__file__).parents[2] / "openapi" / "openapi.json"
ADMIN = "fuzz-admin-token-0123456789"


async def test_fuzz_the_api_against_its_document(db_url: str, tmp_path: Path) -> None:
    replica = await start_replica(
        db_url,
        tmp_path,
        name="fuzzed",
        env={
            "TASKMILL_TOKENS": f"admin={ADMIN},worker=fuzz-worker-token-0123456789",
            "TASKMILL_MAX_WAIT_SECONDS": "0.5",
        },
    )
    seed = os.environ.get("TASKMILL_FUZZ_SEED", "20240601")
    examples = os.environ.get("TASKMILL_FUZZ_EXAMPLES", "8")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(DOCUMENT),
            "--url",
            replica.url,
            "--header",
            f"Authorization: Bearer {ADMIN}",
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
            # A stream that never ends by itself: its own tests read it.
            "--exclude-path",
            "/events",
            "--max-examples",
            examples,
            "--seed",
            seed,
            # One worker: hypothesis' lambda introspection is not thread-safe (it errors
            # at random with several workers).
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
            "--output-truncate",
            "false",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        await replica.stop()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-20000:]
    assert "Tested:" in report, report[-5000:]
    assert "Server error" not in report
