"""Bearer-token auth (SPEC §9): which token may call what. The role table lives here only.

Two steps, so that an unauthenticated client never gets its body read or parsed:

- :class:`Authenticate` (ASGI middleware, outermost): no token or an unknown token → 401
  before anything else happens. With no tokens configured, auth is off and only loopback
  clients are served (403 for anyone else), whatever address the server was bound to.
- :func:`authorize` (a FastAPI dependency on every route): the token's role must grant the
  operation's permission → else 403. It returns the :class:`Caller`; ``POST /tasks`` passes
  ``caller.children_only`` to the domain, which lets a worker submit only children of a
  running (leased) task.

Tokens are compared in constant time: the SHA-256 of the presented token is compared with
``hmac.compare_digest`` against the digest of every configured token, without stopping at
the first match, so neither the position nor the length of a token leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from ..config import Settings
from ..domain.errors import Forbidden
from .problems import PROBLEM_JSON, problem

log = logging.getLogger("taskmill.auth")


class Permission(StrEnum):
    """What an operation needs."""

    READ = "read"  # every GET: tasks, tags, aggregates, groups, events, snapshot, metrics
    SUBMIT = "submit"  # submit tasks (single, batch) and cancel them
    CHILDREN = "children"  # submit children of a running task (``parent_id``)
    LEASE = "lease"  # the lease protocol: lease, heartbeat, complete, fail, release, …
    ADMIN = "admin"  # configuration: groups (limits, pause)


# -- the role table ----------------------------------------------------------------------

ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "producer": frozenset({Permission.READ, Permission.SUBMIT}),
    # READ too: the SDK worker reads its task and, in the finalize phase, its children
    # (GET /tasks/{id}, GET /tasks?parent_id=…); a leased task's payload is the worker's
    # anyway, and reading is the least any role may do.
    "worker": frozenset({Permission.LEASE, Permission.CHILDREN, Permission.READ}),
    "reader": frozenset({Permission.READ}),
}

#: Answer without a token (load balancers' health checks). The OpenAPI document and the
#: docs pages are public too: they describe the API and hold no data.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

#: Operations whose permission is not the default one (see :func:`required`).
OPERATIONS: dict[str, Permission] = {
    "submit_task": Permission.SUBMIT,
    "submit_tasks_batch": Permission.SUBMIT,
    "cancel_task": Permission.SUBMIT,
    "cancel_tasks": Permission.SUBMIT,
    "put_group": Permission.ADMIN,
}

#: Operations a CHILDREN permission may call instead of SUBMIT (every item needs a
#: ``parent_id`` naming a running task; the domain checks it in the submit transaction).
CHILD_OPERATIONS = frozenset({"submit_task", "submit_tasks_batch"})


def required(operation_id: str | None, method: str, path: str) -> Permission | None:
    """The permission an operation needs; None for the public ones.

    Listed operations first; then anything under ``/leases`` is the lease protocol; any
    other GET reads; anything else (a route nobody listed) needs admin: new routes are
    closed until someone opens them here.
    """
    if path in PUBLIC_PATHS:
        return None
    if operation_id in OPERATIONS:
        return OPERATIONS[operation_id]
    if path == "/leases" or path.startswith("/leases/"):
        return Permission.LEASE
    if method.upper() in ("GET", "HEAD"):
        return Permission.READ
    return Permission.ADMIN


def roles_for(permission: Permission | None, operation_id: str | None = None) -> list[str]:
    """The roles that may call an operation needing ``permission`` (for the docs)."""
    if permission is None:
        return []
    return sorted(
        role
        for role, granted in ROLES.items()
        if permission in granted
        or (operation_id in CHILD_OPERATIONS and Permission.CHILDREN in granted)
    )


# -- tokens ----------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    """The configured tokens, kept as SHA-256 digests with their roles."""

    entries: tuple[tuple[bytes, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def role_of(self, presented: str) -> str | None:
        """The role of ``presented``, compared in constant time against every token."""
        digest = _digest(presented)
        role = None
        for known, known_role in self.entries:
            if hmac.compare_digest(digest, known):  # no early exit: time is independent
                role = known_role
        return role

    @property
    def roles(self) -> set[str]:
        """The roles that have at least one token."""
        return {role for _, role in self.entries}


def parse_tokens(text: str, source: str) -> list[tuple[str, str]]:
    """``role=token`` entries separated by commas or newlines; ``#`` starts a comment line."""
    pairs = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        for raw in line.split(","):
            entry = raw.strip()
            if not entry:
                continue
            role, sep, token = (part.strip() for part in entry.partition("="))
            if not sep or not token:
                raise ValueError(f"{source}: expected role=token, got {entry.split('=')[0]!r}=…")
            if role not in ROLES:
                raise ValueError(
                    f"{source}: unknown role {role!r} (roles: {', '.join(sorted(ROLES))})"
                )
            if any(c.isspace() for c in token) or not token.isprintable():
                raise ValueError(f"{source}: the {role} token holds whitespace or control chars")
            pairs.append((role, token))
    return pairs


def load_tokens(settings: Settings) -> Tokens:
    """Tokens from ``TASKMILL_TOKENS`` and the file named by ``TASKMILL_TOKENS_FILE``.

    Raises ValueError with a message fit for the operator on any malformed entry.
    """
    pairs = parse_tokens(settings.tokens.get_secret_value(), "TASKMILL_TOKENS")
    if settings.tokens_file is not None:
        try:
            text = settings.tokens_file.read_text()
        except OSError as exc:
            raise ValueError(
                f"TASKMILL_TOKENS_FILE: cannot read {settings.tokens_file}: {exc.strerror}"
            ) from None
        pairs += parse_tokens(text, f"TASKMILL_TOKENS_FILE ({settings.tokens_file})")
        if not pairs:
            raise ValueError(f"TASKMILL_TOKENS_FILE ({settings.tokens_file}) holds no tokens")
    roles: dict[str, str] = {}
    for role, token in pairs:
        if roles.setdefault(token, role) != role:
            raise ValueError(f"one token is given two roles ({roles[token]} and {role})")
        if len(token) < 16:
            log.warning("the %s token is shorter than 16 characters: easy to guess", role)
    return Tokens(tuple((_digest(token), role) for token, role in roles.items()))


def is_loopback_host(host: str) -> bool:
    """True for an address that only this machine can reach (the bind check of serve)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


# -- step 1: authenticate (middleware) ----------------------------------------------------

_CALLER = "taskmill.caller"


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``role`` None when auth is off (everything is allowed)."""

    role: str | None
    children_only: bool = False


_ANONYMOUS = Caller(role=None)


class Authenticate:
    """401 for a missing or unknown bearer token, before the request is read further."""

    def __init__(self, app: Any, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            # No route uses one today; should one appear, it is not an open door.
            client = scope.get("client")
            if self.tokens:
                role = self.tokens.role_of(_bearer(scope))
            else:
                role = None if client and not is_loopback_host(client[0]) else "admin"
            if role is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            scope[_CALLER] = Caller(role=role if self.tokens else None)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if not self.tokens:
            if client and not is_loopback_host(client[0]):
                _log_refusal(scope, 403, "auth is off and the client is not on loopback")
                response = problem(
                    403,
                    "forbidden",
                    "Forbidden",
                    "auth is off (no TASKMILL_TOKENS): only clients on this machine are served",
                )
                await response(scope, receive, send)
                return
            scope[_CALLER] = _ANONYMOUS
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC_PATHS or path in DOC_PATHS:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        scheme, _, token = header.strip().partition(" ")
        if not header:
            reason = "an Authorization: Bearer <token> header is required"
        elif scheme.lower() != "bearer" or not token.strip():
            reason = "the Authorization header must be: Bearer <token>"
        else:
            role = self.tokens.role_of(token.strip())
            if role is not None:
                scope[_CALLER] = Caller(role=role)
                await self.app(scope, receive, send)
                return
            reason = "the bearer token is not valid"
        _log_refusal(scope, 401, reason)
        response = problem(401, "unauthorized", "Unauthorized", reason)
        error = "" if not header else ', error="invalid_token"'
        response.headers["WWW-Authenticate"] = f'Bearer realm="taskmill"{error}'
        await response(scope, receive, send)


def _bearer(scope: Any) -> str:
    scheme, _, token = _header(scope, b"authorization").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _header(scope: Any, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _log_refusal(scope: Any, status: int, reason: str, role: str | None = None) -> None:
    # Never the token itself: the client address, the route, the role and why.
    client = scope.get("client") or ("-", 0)
    log.info(
        "auth %d %s %s from %s%s: %s",
        status,
        scope.get("method", "-"),
        scope.get("path", "-"),
        client[0],
        f" (role {role})" if role else "",
        reason,
    )


# -- step 2: authorize (dependency) -------------------------------------------------------


async def authorize(request: HTTPConnection) -> Caller:
    """403 unless the caller's role grants the route's permission; the caller otherwise."""
    caller: Caller | None = request.scope.get(_CALLER)
    route = request.scope.get("route")
    operation_id = route.operation_id if isinstance(route, APIRoute) else None
    path = route.path_format if isinstance(route, APIRoute) else request.url.path
    need = required(operation_id, request.scope.get("method", "GET"), path)
    if need is None:
        return caller or _ANONYMOUS
    if caller is None:  # never via Authenticate; a route reached another way stays shut
        raise Forbidden("the request was not authenticated")
    if caller.role is None:  # auth is off: Authenticate let in a loopback client
        return caller
    granted = ROLES[caller.role]
    if need in granted:
        return caller
    if operation_id in CHILD_OPERATIONS and Permission.CHILDREN in granted:
        return Caller(role=caller.role, children_only=True)
    _log_refusal(request.scope, 403, f"needs {need.value}", caller.role)
    raise Forbidden(
        f"the {caller.role} role may not call this operation (it needs {need.value}; "
        f"allowed: {', '.join(roles_for(need, operation_id))})",
        role=caller.role,
    )


#: Declare on a route to receive the caller (every route is authorized anyway).
Authorized = Annotated[Caller, Depends(authorize)]


# -- OpenAPI -----------------------------------------------------------------------------

SCHEME = "bearer"


def _problem_response(description: str, www_authenticate: bool) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if www_authenticate:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "`Bearer` challenge",
                "schema": {"type": "string"},
            }
        }
    return response


def document(schema: dict[str, Any]) -> None:
    """Declare the bearer scheme, each operation's security, roles and 401/403 answers."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from TASKMILL_TOKENS / TASKMILL_TOKENS_FILE. Roles: "
        + "; ".join(
            f"{role}: {', '.join(sorted(p.value for p in perms))}"
            for role, perms in sorted(ROLES.items())
        )
        + ". Without configured tokens auth is off and only loopback clients are served.",
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            need = required(operation.get("operationId"), method, path)
            if need is None:
                operation["security"] = []
                continue
            roles = roles_for(need, operation.get("operationId"))
            operation["security"] = [{SCHEME: []}]
            operation["x-taskmill-roles"] = roles
            note = f"Roles: {', '.join(roles)}."
            if operation.get("operationId") in CHILD_OPERATIONS:
                note += " A worker token may only submit children of a running task."
            description = operation.get("description", "")
            operation["description"] = f"{description}\n\n{note}" if description else note
            responses = operation["responses"]
            responses["401"] = _problem_response("Missing or invalid bearer token", True)
            responses["403"] = _problem_response("The token's role may not do this", False)
