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


def test_store_never_imports_fastapi_domain_or_api() -> None:
    bad = {
        (f, m)
        for f, m in _imports("store")
        if m.startswith(("fastapi", "starlette", "..api", "..domain", "..schemas"))
    }
    assert not bad


def test_domain_never_imports_the_api_or_fastapi() -> None:
    bad = {(f, m) for f, m in _imports("domain") if m.startswith(("fastapi", "..api"))}
    assert not bad
