"""Field types shared by the wire models: NUL-free text, bounded JSON, tags, I/O figures."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.config import JsonDict

#: JSON documents nest at most this deep (a guard against stack-exhausting input).
MAX_JSON_DEPTH = 64

TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
TAG_KEY_RE = re.compile(TAG_KEY_PATTERN)
MAX_TAGS = 32
MAX_TAG_VALUE = 256
RESERVED_TAG_PREFIX = "taskmill."


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: refuse it here with a 422, not a 500 later.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    # Nor can UTF-8 encode a lone surrogate (JSON allows "\ud800"; it is not text).
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must not contain unpaired surrogates") from None
    return value


def check_json(value: Any) -> Any:
    """Refuse JSON that PostgreSQL cannot store (NUL in strings) or that nests too deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            _no_nul(item)
        elif isinstance(item, float) and not math.isfinite(item):
            # Python's JSON parser reads 1e400 as inf and accepts NaN; JSON cannot hold them.
            raise ValueError("numbers must be finite (1e400, NaN and Infinity are not JSON)")
        elif isinstance(item, dict):
            for key, sub in item.items():
                _no_nul(key)
                stack.append((sub, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)
    return value


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not TAG_KEY_RE.fullmatch(key):  # fullmatch: `$` would accept a trailing newline
            raise ValueError(f"tag key {key!r} must be 1-64 characters of [A-Za-z0-9_.:/-]")
        if key.lower().startswith(RESERVED_TAG_PREFIX):  # Taskmill.x would spoof it too
            raise ValueError(f"tag key {key!r} is in the reserved 'taskmill.' namespace")
        if len(value) > MAX_TAG_VALUE:
            raise ValueError(f"tag {key!r}: value longer than {MAX_TAG_VALUE} characters")
        _no_nul(value)
    return tags


def _rfc3339_text(value: Any) -> Any:
    # pydantic would also take a number (or a string of digits) as seconds since 1970:
    # `run_after: 0` is not an RFC 3339 instant, and a client sending it made a mistake.
    if not isinstance(value, str) or _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an RFC 3339 string such as 2030-01-01T00:00:00Z")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _utc_representable(value: datetime) -> datetime:
    # 0001-01-01T00:00+14:00 parses, but is before year 1 in UTC: the driver would fail.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("instant out of range") from None
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_nul)]
TaskType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
Json = Annotated[Any, AfterValidator(check_json)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
Tags = Annotated[
    dict[str, str],
    AfterValidator(_check_tags),
    # What _check_tags enforces, said in the schema so that generated clients know it
    # (the reserved prefix, case-insensitive, as a lookahead).
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_TAGS,
            "propertyNames": {
                "pattern": "^(?![Tt][Aa][Ss][Kk][Mm][Ii][Ll][Ll]\\.)" + TAG_KEY_PATTERN[1:]
            },
            "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
        }
    ),
]
#: An integer in JSON, never ``true`` or ``"5"`` (pydantic's lax mode would take both).
Int = Annotated[int, Strict()]
#: A JSON number (an integer is one too), never a boolean or a numeric string.
Number = Annotated[float, Strict()]
#: An RFC 3339 instant with an explicit offset, representable in UTC.
Instant = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc_representable)
]


class Model(BaseModel):
    """Base of request models: unknown fields are an error, not silently dropped.

    Numbers are :data:`Int` and :data:`Number`, booleans ``StrictBool``: a test walks
    every request model and refuses a plain ``int``, ``float`` or ``bool`` field.
    """

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


def _is_none(value: object) -> bool:
    return value is None


def absent_if_none(description: str | None = None) -> Any:
    """A response field that the answer leaves out, rather than sends as null, when it
    has no value: the schema says "not required, not nullable" (see ``Out``)."""
    return Field(default=None, exclude_if=_is_none, description=description)


def absent_fields(schema: JsonDict, cls: type[BaseModel]) -> None:
    names = {n for n, f in cls.model_fields.items() if f.exclude_if is _is_none}
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [n for n in required if n not in names]
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for name in names:
        prop = properties[name]
        assert isinstance(prop, dict)
        prop.pop("default", None)
        branches = prop.pop("anyOf", None)
        if isinstance(branches, list):
            kept = [b for b in branches if b != {"type": "null"}]
            if len(kept) == 1 and isinstance(kept[0], dict):
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept


class Out(BaseModel):
    """Base of response models: every field is in every answer, so the schema makes each
    one required (a default is the server's, not the client's to leave out), but for
    those declared with :func:`absent_if_none`. A model used both ways gets
    ``<Name>-Input`` and ``<Name>-Output`` schemas: in a request, a field with a default
    may be left out."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True, json_schema_extra=absent_fields
    )


class IO(Model):
    """Bytes read, written, received and sent (expected at submit, actual at completion)."""

    read_bytes: Int = Field(default=0, ge=0, le=2**62)
    write_bytes: Int = Field(default=0, ge=0, le=2**62)
    net_rx_bytes: Int = Field(default=0, ge=0, le=2**62)
    net_tx_bytes: Int = Field(default=0, ge=0, le=2**62)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """The four figures in column order."""
        return (self.read_bytes, self.write_bytes, self.net_rx_bytes, self.net_tx_bytes)
