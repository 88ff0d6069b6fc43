"""The plpgsql of the schema, as versioned files that migrations load.

``NNNN_name.sql`` is loaded by migration NNNN and never changes afterwards: a later version
replaces its objects in a file of its own, so every migration creates exactly what it
created when it was written. The newest file holds the functions the database runs now.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def text(name: str) -> str:
    """The whole file ``name`` (e.g. ``0005_lifecycle.sql``)."""
    return (_HERE / name).read_text()


def statements(name: str) -> list[str]:
    """The statements of ``name``, split at the semicolons outside ``$$`` bodies (the
    driver prepares statements one at a time)."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for line in text(name).splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue  # comments between statements
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if "".join(current).strip():
        raise ValueError(f"{name}: unterminated statement at the end")
    return out
