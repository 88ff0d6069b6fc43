"""Dockerfile and docker-compose.yml, checked without a container engine: the compose file
against the Compose Specification's JSON schema (as vendored by check-jsonschema), and the
image installing and starting taskmill the way the README does."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_runs_postgres_migrations_service_and_worker() -> None:
    services = _compose()["services"]
    assert {"postgres", "migrate", "taskmill", "worker"} <= set(services)
    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    # Migrations first, once, after PostgreSQL is healthy; then the service.
    migrate = services["migrate"]
    assert _command(migrate) == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    service = services["taskmill"]
    command = _command(service)
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert "--no-migrate" in command
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # It binds 0.0.0.0, so it must have tokens, required (no default secret in the file).
    tokens = service["environment"]["TASKMILL_TOKENS"]
    roles = dict(re.findall(r"(\w+)=\$\{(\w+):\?", tokens))
    assert {"admin", "worker"} <= set(roles), tokens
    assert "postgres:5432" in service["environment"]["DATABASE_URL"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    # The example worker: a worker-role token and a module that exists.
    worker = services["worker"]
    assert _command(worker)[0] == "worker"
    module, _, attr = _command(worker)[1].partition(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()
    assert re.search(rf"^{attr}\s*=", (ROOT / (module.replace(".", "/") + ".py")).read_text(), re.M)
    assert (
        worker["environment"]["TASKMILL_TOKEN"] == f"${{{roles['worker']}:?set {roles['worker']}}}"
    )
    assert worker["environment"]["TASKMILL_URL"] == "http://taskmill:8000"
    for name in ("migrate", "taskmill", "worker"):
        assert services[name]["build"] == "."


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage and build stages alike."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _readme_first_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```sh\n(.+?)\n```", readme, re.S)
    assert match, "the README starts with a sh block"
    return match.group(1).strip()


def _normalized_pip_installs(command: str) -> list[str]:
    """`<venv>/bin/pip install [flags] TARGET…` with the flags that do not change what is
    installed (-e, -q, --no-cache-dir) left out."""
    installs = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if len(words) >= 2 and words[0].endswith("/bin/pip") and words[1] == "install":
            targets = [w for w in words[2:] if w not in ("-e", "-q", "--no-cache-dir")]
            installs.append(f"{words[0]} install {' '.join(targets)}")
    return installs


def test_dockerfile_installs_and_starts_like_the_readme() -> None:
    readme = _readme_first_command()
    assert readme == (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/taskmill serve"
    )
    instructions = _dockerfile()
    runs = [args for kind, args in instructions if kind == "RUN"]
    install = next(r for r in runs if "pip install" in r)
    # The same venv, the same pip install of this directory (not editable in the image).
    assert install.startswith("python3 -m venv .venv && ")
    assert _normalized_pip_installs(install) == _normalized_pip_installs(readme)
    # The same entry point: the `taskmill` console script of pyproject.toml, running serve.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["taskmill"] == "app.cli:main"
    entrypoint = [json.loads(args) for kind, args in instructions if kind == "ENTRYPOINT"]
    cmd = [json.loads(args) for kind, args in instructions if kind == "CMD"]
    assert entrypoint[-1] == ["taskmill"]
    assert cmd[-1][0] == "serve" == readme.split()[-1]
    env = " ".join(args for kind, args in instructions if kind == "ENV")
    assert "PATH=/opt/taskmill/.venv/bin:" in env  # where the build stage's venv is copied
    # Every source the install needs is copied in (the package list of pyproject.toml).
    copied = " ".join(args for kind, args in instructions if kind == "COPY")
    for needed in ("pyproject.toml", "README.md", "app", "migrations", "sdk"):
        assert re.search(rf"(^|\s){re.escape(needed)}(\s|$)", copied), needed


def test_image_runs_as_an_unprivileged_user() -> None:
    instructions = _dockerfile()
    stages = [i for i, (kind, _) in enumerate(instructions) if kind == "FROM"]
    final = instructions[stages[-1] :]
    users = [args for kind, args in final if kind == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert any(kind == "RUN" and "useradd" in args for kind, args in final)
    # Small: the runtime stage is slim and gets the venv only, no compiler, no sources.
    assert final[0][1].startswith("python:") and "slim" in final[0][1]
    assert not any(kind == "RUN" and "pip install" in args for kind, args in final)
