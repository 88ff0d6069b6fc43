"""Bearer tokens and roles (SPEC §9): 401 and 403 as problem+json, the role table, worker
children, public health checks, the OpenAPI declaration, loopback-only without tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.api import auth
from app.config import Settings
from app.main import create_app
from tests.api.support import assert_problem, table_counts
from tests.conftest import Server, ServerFactory

TOKENS = {
    "admin": "admin-token-0123456789abcdef",
    "producer": "producer-token-0123456789abcdef",
    "worker": "worker-token-0123456789abcdef",
    "reader": "reader-token-0123456789abcdef",
}
TOKENS_ENV = ",".join(f"{role}={token}" for role, token in TOKENS.items())
COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


def bearer(role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
async def secured(make_server: ServerFactory) -> Server:
    return await make_server(tokens=TOKENS_ENV)


# -- 401 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"authorization": ""}, id="empty"),
        pytest.param({"authorization": "Bearer"}, id="no-token"),
        pytest.param({"authorization": "Bearer    x"}, id="spaces-then-token"),
        pytest.param({"authorization": "Bearer wrong"}, id="unknown-token"),
        pytest.param({"authorization": f"Bearer {TOKENS['admin']}x"}, id="token-plus-one"),
        pytest.param({"authorization": f"Bearer {TOKENS['admin'][:-1]}"}, id="token-minus-one"),
        pytest.param({"authorization": f"Basic {TOKENS['admin']}"}, id="basic-scheme"),
        pytest.param({"authorization": TOKENS["admin"]}, id="no-scheme"),
        pytest.param({"x-api-key": TOKENS["admin"]}, id="other-header"),
    ],
)
async def test_missing_or_invalid_token_is_401(secured: Server, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/tasks"), ("POST", "/leases"), ("GET", "/nope")):
        r = await secured.client.request(method, path, headers=headers, json={})
        problem = assert_problem(r, 401)
        assert problem["type"] == "urn:taskmill:problem:unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_scheme_is_case_insensitive(secured: Server) -> None:
    r = await secured.client.get("/tasks", headers={"authorization": f"bearer {TOKENS['reader']}"})
    assert r.status_code == 200, r.text


async def test_401_comes_before_the_body_is_read(secured: Server, db_url: str) -> None:
    # Malformed, oversized or absurdly deep: an unauthenticated client gets 401, not a
    # parse of its body.
    bodies = [b"{", b"[" * 100_000, b"x" * (17 * 1024 * 1024)]
    for body in bodies:
        r = await secured.client.post(
            "/tasks", content=body, headers={"content-type": "application/json"}
        )
        assert_problem(r, 401)
    assert await table_counts(db_url) == (0, 0)


async def test_health_and_docs_need_no_token(secured: Server) -> None:
    assert (await secured.client.get("/healthz")).status_code == 200
    assert (await secured.client.get("/readyz")).status_code == 200
    assert (await secured.client.get("/openapi.json")).status_code == 200


async def test_tokens_never_reach_the_logs(
    secured: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guess = "not-a-token-but-a-secret-guess"
    await secured.client.get("/tasks", headers={"authorization": f"Bearer {guess}"})
    await secured.client.put("/groups/g", headers=bearer("reader"), json={})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "auth 401 GET /tasks" in text
    assert "auth 403 PUT /groups/g" in text and "role reader" in text
    assert guess not in text
    for token in TOKENS.values():
        assert token not in text


# -- 403: the role table -----------------------------------------------------------------

ALLOWED = {
    # (method, path) -> roles that may call it
    ("POST", "/tasks"): {"admin", "producer"},
    ("POST", "/tasks/batch"): {"admin", "producer"},
    ("GET", "/tasks"): {"admin", "producer", "reader", "worker"},
    ("GET", "/tasks/{id}"): {"admin", "producer", "reader", "worker"},
    ("POST", "/tasks/{id}/cancel"): {"admin", "producer"},
    ("POST", "/leases"): {"admin", "worker"},
    ("POST", "/leases/{lease}/heartbeat"): {"admin", "worker"},
    ("PATCH", "/leases/{lease}/state"): {"admin", "worker"},
    ("POST", "/leases/{lease}/release"): {"admin", "worker"},
    ("POST", "/leases/complete"): {"admin", "worker"},
    ("PUT", "/groups/g"): {"admin"},
    ("GET", "/groups"): {"admin", "producer", "reader", "worker"},
}

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/tasks"): {"type": "t"},
    ("POST", "/tasks/batch"): {"tasks": [{"type": "t"}]},
    ("POST", "/leases"): {"worker_id": "w", "max_tasks": 1},
    ("POST", "/leases/{lease}/heartbeat"): {},
    ("PATCH", "/leases/{lease}/state"): {"state": {"a": 1}},
    ("POST", "/leases/complete"): {"items": [{"lease_id": "{lease}"}]},
    ("PUT", "/groups/g"): {"max_concurrency": 3},
}


@pytest.mark.parametrize("role", sorted(TOKENS))
async def test_role_table(secured: Server, role: str) -> None:
    client = secured.client
    admin = bearer("admin")
    task = (await client.post("/tasks", json={"type": "t"}, headers=admin)).json()["task"]
    lease = (await client.post("/leases", json={"worker_id": "w"}, headers=admin)).json()
    lease_id = lease["leases"][0]["lease_id"]
    await client.post("/tasks", json={"type": "t"}, headers=admin)  # something to lease
    for (method, template), roles in ALLOWED.items():
        path = template.replace("{id}", task["id"]).replace("{lease}", lease_id)
        body = json.loads(
            json.dumps(BODIES.get((method, template), {})).replace("{lease}", lease_id)
        )
        r = await client.request(method, path, json=body, headers=bearer(role))
        if role in roles:
            assert r.status_code < 400 or r.status_code in (409, 410), (role, method, path, r.text)
        else:
            problem = assert_problem(r, 403)
            assert problem["type"] == "urn:taskmill:problem:forbidden", problem
            assert role in problem["detail"], problem


async def test_new_routes_default_to_admin_and_gets_to_readers() -> None:
    # The rule for operations nobody listed: closed (admin) unless it is a GET (read) or
    # part of the lease protocol.
    assert auth.required("something_new", "POST", "/things") is auth.Permission.ADMIN
    assert auth.required("something_new", "DELETE", "/tasks/{task_id}") is auth.Permission.ADMIN
    assert auth.required("get_snapshot", "GET", "/snapshot") is auth.Permission.READ
    assert auth.required("metrics", "GET", "/metrics") is auth.Permission.READ
    assert auth.required("ack", "POST", "/leases/{lease_id}/cancelled") is auth.Permission.LEASE
    assert auth.required(None, "GET", "/healthz") is None
    assert auth.required(None, "GET", "/readyz") is None


# -- workers submit children only ---------------------------------------------------------


async def test_worker_submits_only_children_of_the_task_it_holds(
    secured: Server, db_url: str
) -> None:
    client = secured.client
    worker = bearer("worker")
    parent = (await client.post("/tasks", json={"type": "p"}, headers=bearer("producer"))).json()
    parent_id = parent["task"]["id"]
    # Not a child, or a child without the lease held on its parent: 403, nothing written.
    before = await table_counts(db_url)
    r = await client.post("/tasks", json={"type": "c"}, headers=worker)
    problem = assert_problem(r, 403)
    assert [e["field"] for e in problem["errors"]] == ["parent_id", "parent_lease_id"]
    r = await client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "c", "parent_id": parent_id}, {"type": "c"}]},
        headers=worker,
    )
    problem = assert_problem(r, 403)
    assert [e["field"] for e in problem["errors"]] == [
        "tasks[0].parent_lease_id",
        "tasks[1].parent_id",
        "tasks[1].parent_lease_id",
    ]
    assert await table_counts(db_url) == before
    # Once the worker holds the lease, children naming it are accepted, single and batched.
    r = await client.post("/leases", json={"worker_id": "w"}, headers=worker)
    (granted,) = r.json()["leases"]
    assert granted["task"]["id"] == parent_id
    child = {"type": "c", "parent_id": parent_id, "parent_lease_id": granted["lease_id"]}
    r = await client.post("/tasks", json=child, headers=worker)
    assert r.status_code == 201, r.text
    assert r.json()["task"]["parent_id"] == parent_id
    r = await client.post("/tasks/batch", json={"tasks": [child] * 2}, headers=worker)
    assert r.status_code == 200, r.text
    # Another task's lease, or a made-up one, does not hold this parent: 403.
    other = (await client.post("/tasks", json={"type": "p"}, headers=bearer("producer"))).json()
    r = await client.post("/leases", json={"worker_id": "w2", "types": ["p"]}, headers=worker)
    (other_lease,) = r.json()["leases"]
    assert other_lease["task"]["id"] == other["task"]["id"]
    before = await table_counts(db_url)
    for lease_id in (other_lease["lease_id"], parent_id + "." + "0" * 32):
        wrong = {**child, "parent_lease_id": lease_id}
        r = await client.post("/tasks", json=wrong, headers=worker)
        problem = assert_problem(r, 403)
        assert [e["field"] for e in problem["errors"]] == ["parent_lease_id"]
    assert await table_counts(db_url) == before
    # Producers and admins submit anything (children too, by parent_id alone).
    for role in ("producer", "admin"):
        r = await client.post("/tasks", json={"type": "x"}, headers=bearer(role))
        assert r.status_code == 201, r.text
    r = await client.post(
        "/tasks", json={"type": "c", "parent_id": parent_id}, headers=bearer("producer")
    )
    assert r.status_code == 201, r.text


# -- configuration ----------------------------------------------------------------------


def test_token_sources_merge_and_comments(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# operators\nadmin=file-admin-token-000000\n\nworker=w1-token-0000000000,\n")
    tokens = auth.load_tokens(
        Settings(tokens=SecretStr("reader=env-reader-token-0000000"), tokens_file=file)
    )
    assert tokens.role_of("file-admin-token-000000") == "admin"
    assert tokens.role_of("w1-token-0000000000") == "worker"
    assert tokens.role_of("env-reader-token-0000000") == "reader"
    assert tokens.role_of("nope") is None
    assert tokens.role_of("") is None
    assert not auth.load_tokens(Settings())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root=abc", "unknown role 'root'"),
        ("admin", "expected role=token"),
        ("admin=", "expected role=token"),
        ("admin=a b", "whitespace"),
        ("admin=same-token-000000,reader=same-token-000000", "two roles"),
    ],
)
def test_bad_token_settings_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        auth.load_tokens(Settings(tokens=SecretStr(text)))


def test_missing_or_empty_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        auth.load_tokens(Settings(tokens_file=tmp_path / "absent"))
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no tokens"):
        auth.load_tokens(Settings(tokens_file=tmp_path / "empty"))


def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = auth.load_tokens(Settings(tokens=SecretStr(TOKENS_ENV)))
    calls: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented in (TOKENS["admin"], TOKENS["reader"], "x", "y" * 1000):
        calls.clear()
        tokens.role_of(presented)
        # Every configured token is compared, on digests of one length whatever was sent.
        assert calls == [(32, 32)] * len(TOKENS)


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        assert auth.is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "example.com", ""):
        assert not auth.is_loopback_host(host), host


async def test_without_tokens_only_loopback_clients_are_served() -> None:
    app = create_app(Settings(), database_url="postgresql://unused/unused")
    for client_address, expected in ((("10.1.2.3", 5555), 403), (("127.0.0.1", 5555), 200)):
        transport = httpx.ASGITransport(app=app, client=client_address)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/healthz")
        assert r.status_code == expected, r.text
        if expected == 403:
            assert "auth is off" in assert_problem(r, 403)["detail"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    # A server that cannot exist: nothing may be started before the refusal.
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["--host", "0.0.0.0"], {}, b"refusing to serve on 0.0.0.0: auth is off"),
        (["--host", "::"], {}, b"refusing to serve on ::"),
        ([], {"TASKMILL_TOKENS": "boss=x"}, b"unknown role 'boss'"),
        ([], {"TASKMILL_TOKENS_FILE": "/nonexistent/tokens"}, b"cannot read"),
    ],
)
async def test_serve_refuses_to_start(
    args: list[str], extra: dict[str, str], message: bytes
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "serve",
        "--no-migrate",
        *args,
        env=_env(**extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2, err
    assert message in err, err


# -- OpenAPI -------------------------------------------------------------------------------


def test_openapi_declares_the_bearer_scheme() -> None:
    doc = json.loads(COMMITTED.read_text())
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path in ("/healthz", "/readyz"):
                assert op["security"] == [], path
                continue
            assert op["security"] == [{"bearer": []}], (method, path)
            assert op["x-taskmill-roles"], (method, path)
            for code in ("401", "403"):
                content = op["responses"][code]["content"]
                assert "application/problem+json" in content, (method, path, code)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]


async def test_websockets_are_not_a_way_around() -> None:
    # No route is a websocket today; the middleware shuts them anyway without a token.
    reached: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    tokens = auth.load_tokens(Settings(tokens=SecretStr(TOKENS_ENV)))
    for middleware, headers, client in (
        (auth.Authenticate(app, tokens), [], ("127.0.0.1", 1)),
        (auth.Authenticate(app, tokens), [(b"authorization", b"Bearer nope")], ("127.0.0.1", 1)),
        (auth.Authenticate(app, auth.Tokens()), [], ("10.0.0.9", 1)),
    ):
        scope = {"type": "websocket", "path": "/ws", "headers": headers, "client": client}
        await middleware(scope, None, send)
        assert sent.pop() == {"type": "websocket.close", "code": 1008}
    assert reached == []
    good = [(b"authorization", f"Bearer {TOKENS['reader']}".encode())]
    scope = {"type": "websocket", "path": "/ws", "headers": good, "client": ("10.0.0.9", 1)}
    await auth.Authenticate(app, tokens)(scope, None, send)
    assert reached and reached[0]["taskmill.caller"] == auth.Caller(role="reader")
