"""TypeScript clients of openapi/openapi.json: openapi-typescript types and openapi-fetch.

The project in tests/clients/ts (exact versions, committed package-lock.json) is installed
with `npm ci` when its node_modules is missing or older than the lockfile (CI runs
`npm ci --prefix tests/clients/ts` first, so this is a no-op there). Each test copies the
sources into its own directory, generates `generated/openapi.ts` there from the committed
document and runs tsc in strict mode:

- the types catch mistakes: `src/wrong.ts` holds deliberately wrong calls and reads, each
  under `// @ts-expect-error TSnnnn "<fragment of the message>"`. tsc refuses an unused
  directive, and a copy without the directives must fail on exactly those lines, with
  that code and message, so no line passes by failing for some other reason;
- `src/roundtrip.ts` names every operation of the document (a new operation without a
  TypeScript use fails) and, compiled and run by node against a live server, calls every
  one of them; it prints a JSON summary that is checked here and against the server.

Needs Node 20 and npm on the machine.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.helpers import run_command

ROOT = Path(__file__).parents[2]
DOCUMENT = ROOT / "openapi" / "openapi.json"
TS = ROOT / "tests" / "clients" / "ts"
NPM_CI = ("npm", "ci", "--prefix", "tests/clients/ts")  # the README's and .ci/run's command

DIRECTIVE = re.compile(r'//\s*@ts-expect-error\s+TS(\d+)\s+("(?:[^"\\]|\\.)*")')
TSC_ERROR = re.compile(r"^(?P<file>[^(\s]+)\((?P<line>\d+),(?P<col>\d+)\): error TS(?P<code>\d+): ")


async def _run(*cmd: str, cwd: Path, timeout: float = 120) -> str:
    """Run a command within ``timeout``; its output, asserting exit status 0."""
    status, text = await run_command(*cmd, cwd=cwd, timeout=timeout)
    assert status == 0, f"{' '.join(cmd)} exited {status}:\n{text[-20000:]}"
    return text


async def _tsc(workspace: Path, *args: str) -> tuple[int, str]:
    """tsc over the workspace's project; (exit status, output)."""
    proc = await asyncio.create_subprocess_exec(
        "npx", "--no", "--", "tsc", "-p", str(workspace), "--pretty", "false", *args,
        cwd=TS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _installed_is_current() -> bool:
    marker = TS / "node_modules" / ".package-lock.json"  # written by every npm ci
    lock = TS / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


async def _ensure_node_modules() -> None:
    for tool in ("node", "npm", "npx"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the TypeScript client tests need Node 20 and npm")
    # Both xdist workers may get here on a fresh checkout: one npm ci at a time.
    lock = Path(tempfile.gettempdir()) / "taskmill-ts-npm-ci.lock"
    with lock.open("w") as held:
        await asyncio.to_thread(fcntl.flock, held, fcntl.LOCK_EX)
        try:
            if not _installed_is_current():
                await _run(*NPM_CI, cwd=ROOT, timeout=300)
            assert _installed_is_current(), "npm ci left no node_modules/.package-lock.json"
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


async def _workspace(tmp_path: Path) -> Path:
    """This test's copy of tests/clients/ts, with types freshly generated from the document."""
    await _ensure_node_modules()
    ws = tmp_path / "ts"
    ws.mkdir()
    for name in ("package.json", "tsconfig.json"):
        shutil.copy(TS / name, ws / name)
    shutil.copytree(TS / "src", ws / "src")
    (ws / "node_modules").symlink_to(TS / "node_modules", target_is_directory=True)
    generated = ws / "generated" / "openapi.ts"
    # --default-non-nullable false: a request field with a default may be left out (the
    # document's *-Output schemas already list every answer field as required).
    # --enum-values: the enums as runtime arrays too (the programs check event names).
    output = await _run(
        "npx", "--no", "--", "openapi-typescript", str(DOCUMENT),
        "--default-non-nullable", "false", "--enum-values", "-o", str(generated),
        cwd=TS,
    )  # fmt: skip
    assert generated.exists(), output
    assert not re.search(r"warn|error", output, re.IGNORECASE), output
    return ws


def _operation_ids() -> list[str]:
    document = json.loads(DOCUMENT.read_text())
    return [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    ]


def _operations_by_route() -> dict[tuple[str, str], str]:
    document = json.loads(DOCUMENT.read_text())
    return {
        (method.upper(), path): op["operationId"]
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


async def test_typescript_types_refuse_wrong_calls_and_accept_the_program(
    tmp_path: Path,
) -> None:
    ws = await _workspace(tmp_path)

    # Every operation of the document is named in the program (and tsc checks the
    # program's table against the generated `operations`).
    program = (ws / "src" / "roundtrip.ts").read_text()
    for operation_id in _operation_ids():
        assert re.search(rf"\b{operation_id}\b", program), f"{operation_id} unused in roundtrip.ts"

    status, out = await _tsc(ws, "--noEmit", "--strict")
    assert status == 0, out

    # Without the directives, every marked line fails, for the reason its directive names.
    wrong = ws / "src" / "wrong.ts"
    lines = wrong.read_text().splitlines()
    expected: dict[int, tuple[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if "@ts-expect-error" in line and line.lstrip().startswith("//"):
            match = DIRECTIVE.search(line)
            if match is None:
                if "`@ts-expect-error`" in line:
                    continue  # the file's header comment
                pytest.fail(f"wrong.ts:{number}: directive without TSnnnn and message: {line}")
            expected[number + 1] = (match.group(1), json.loads(match.group(2)))
            lines[number - 1] = "//"  # keep the line numbers
    assert len(expected) >= 25, sorted(expected)
    wrong.write_text("\n".join(lines) + "\n")
    status, out = await _tsc(ws, "--noEmit", "--strict")
    assert status != 0, "wrong.ts compiles without its @ts-expect-error directives"
    errors: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        match = TSC_ERROR.match(line)
        if match:
            assert match["file"].endswith("src/wrong.ts"), f"an error outside wrong.ts: {line}"
            current = errors.setdefault(int(match["line"]), [])
            current.append(line)
        elif current is not None and line.startswith(" "):
            current[-1] += "\n" + line  # a continuation of the message
    assert set(errors) == set(expected), (sorted(errors), sorted(expected), out)
    for line_number, (code, fragment) in expected.items():
        found = errors[line_number]
        assert any(f"error TS{code}: " in e and fragment in e for e in found), (
            f"wrong.ts:{line_number} ({lines[line_number - 1].strip()}) should fail with "
            f"TS{code} {fragment!r}; tsc said:\n" + "\n".join(found)
        )


async def test_typescript_client_round_trip_against_a_live_server(
    server: Server, tmp_path: Path
) -> None:
    ws = await _workspace(tmp_path)
    status, out = await _tsc(ws, "--strict", "--noEmit", "false", "--outDir", str(ws / "dist"))
    assert status == 0, out
    script = ws / "dist" / "src" / "roundtrip.js"
    assert script.exists(), sorted(str(p) for p in (ws / "dist").rglob("*.js"))
    env = {**os.environ, "NODE_NO_WARNINGS": "1"}
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), server.url,
        cwd=ws, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode(errors="replace") + stdout.decode(errors="replace")
    summary: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])

    # Every operation of the document was called (middleware records the route of each
    # request), each route the program names is the document's route of that operation.
    routes = _operations_by_route()
    named = {op: tuple(route.split(" ", 1)) for op, route in summary["operations"].items()}
    assert {op: routes.get(route) for op, route in named.items()} == {op: op for op in named}
    called = {routes[(c["method"], c["path"])] for c in summary["calls"]}
    assert called == set(_operation_ids()), set(_operation_ids()) ^ called
    assert all(100 <= c["status"] < 500 for c in summary["calls"]), summary["calls"]

    ids = summary["ids"]
    assert ids["batch_rejected_existing"] == ids["keyed"]
    assert ids["batch_replaced"] == ids["batch_b2"]
    assert ids["replaced_task_id"] == ids["superseded"]
    assert ids["superseded_by"] == ids["superseding"]
    assert summary["batch_outcomes"] == [
        "created", "rejected", "created", "superseded", "deduplicated",
    ]  # fmt: skip
    assert summary["tag_and"] == [ids["keyed"]]
    assert summary["tag_or"] == 3
    assert summary["aggregate_sums"] == {"s3://a": 150, "s3://b": 7, "null": 1}
    assert summary["tag_values"] == {"s3://a": 2, "s3://b": 1}
    assert summary["validation_fields"] == ["priority"]
    assert summary["snapshot"]["dst_a_net_tx"] == 150
    assert summary["snapshot"]["superseded"] >= 1

    sse = summary["sse"]
    first, resumed = sse["first"], sse["resumed"]
    assert len(first) == 4 and first == sorted(set(first))
    assert sse["resumed_after"] == first[1]
    assert resumed[:2] == first[2:] and len(resumed) == 3 and resumed[2] > first[3]

    # The server agrees with what the program saw.
    async def status_of(task_id: str) -> str:
        r = await server.client.get(f"/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    assert await status_of(ids["superseded"]) == "superseded"
    assert await status_of(ids["superseding"]) == "pending"
    assert await status_of(ids["work"]) == "completed"
    assert await status_of(ids["failed"]) == "failed"
    assert await status_of(ids["released"]) == "pending"
    assert await status_of(ids["cancelled"]) == "cancelled"
    r = await server.client.get(f"/tasks/{ids['superseding']}")
    assert r.json()["supersedes"] == ids["superseded"]
