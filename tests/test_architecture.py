"""The layers import in one direction: api -> domain -> store; the store knows no FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).parents[1] / "app"


def _imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (APP / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                found.add((path.name, module))
            elif isinstance(node, ast.Import):
                found.update((path.name, alias.name) for alias in node.names)
    return found


def test_routes_never_import_the_store() -> None:
    bad = {(f, m) for f, m in _imports("api") if "store" in m.split(".")}
    assert not bad


def test_store_never_imports_fastapi_the_api_or_the_use_cases() -> None:
    # The one exception: the lifecycle table, which the store's SQL is written from.
    bad = {
        (f, m)
        for f, m in _imports("store")
        if m.startswith(("fastapi", "starlette", "..api", "..schemas"))
        or (m.startswith("..domain") and m != "..domain.lifecycle")
    }
    assert not bad


def test_the_lifecycle_is_pure() -> None:
    """The table imports nothing of the service (the store and the model both use it)."""
    tree = ast.parse((APP / "domain" / "lifecycle.py").read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "functools", "collections.abc", "dataclasses", "enum"}


def test_domain_never_imports_the_api_or_fastapi() -> None:
    bad = {(f, m) for f, m in _imports("domain") if m.startswith(("fastapi", "..api"))}
    assert not bad
