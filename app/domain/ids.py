"""Task ids and lease ids."""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
TASK_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")  # \Z: `$` would accept a final newline
LEASE_ID_RE = re.compile(r"^([0-9A-HJKMNP-TV-Z]{26})\.([0-9a-f]{32})\Z")


_last = 0  # the last id issued by this process, as an integer
_lock = threading.Lock()


def new_task_id() -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, 26 characters.

    Time-ordered (good btree locality, a natural list order) and random in the tail, so
    never reused. Within one process ids are strictly increasing (monotonic ULID: in the
    same millisecond the previous id plus one), so a batch lists in submission order.
    """
    global _last
    with _lock:
        value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1
        _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def lease_id(task_id: str, token: str) -> str:
    """The public lease id: the task id and the grant's random token."""
    return f"{task_id}.{token.replace('-', '')}"


def parse_lease_id(value: str) -> tuple[str, str] | None:
    """(task id, token as a UUID string), or None if ``value`` is not a lease id."""
    match = LEASE_ID_RE.match(value)
    if match is None:
        return None
    hexed = match.group(2)
    token = f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"
    return match.group(1), token
