"""Request bodies and query strings: parsing and validation into typed values.

Every failure is an :class:`ApiError` naming the field, so bad input never reaches a
handler: malformed JSON is 400, a wrong type or range is 422 with ``details``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from . import _untrusted
from ._errors import ApiError

# A name is a path segment: it may not be "." or ".." nor start like a relative path.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
NAME = re.compile(NAME_PATTERN[1:-1])  # used with fullmatch: "$" would admit a trailing newline
METADATA_LIMIT = 16 * 1024
# Deeper than any document a profile needs; deep enough nesting would exhaust the stack of
# every recursive encoder downstream (json.dumps here, in the store, in clients).
METADATA_DEPTH = 32


def _integral(value: Any) -> Any:
    # JSON has one number type: 512.0 is the integer 512 to a JSON Schema validator, so it is here.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MaxLength = Annotated[int, BeforeValidator(_integral), Field(ge=1, le=4096)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Vector = Annotated[list[Unit], Field(min_length=8, max_length=8)]
ProfileName = Annotated[str, Field(pattern=NAME_PATTERN)]
Prompt = Annotated[str, Field(min_length=1, max_length=10_000)]


class _In(BaseModel):
    # Strict: "1" is not a number and 1 is not a string. Unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Options(_In):
    tenant: str | None = None
    profile_name: ProfileName | None = None
    max_length: MaxLength = 256
    temperature: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 0.7


class GenerateIn(_Options):
    prompt: Prompt


class BatchIn(_Options):
    prompts: Annotated[list[str], Field(min_length=1, max_length=50)]


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if _deeper_than(value, METADATA_DEPTH):
        raise ValueError(f"nests objects and arrays more than {METADATA_DEPTH} levels deep")
    try:
        size = len(json.dumps(value, allow_nan=False, separators=(",", ":")).encode())
    except ValueError:
        raise ValueError("must not contain NaN or Infinity") from None
    if size > METADATA_LIMIT:
        raise ValueError(f"is {size} bytes as JSON; the limit is {METADATA_LIMIT}")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels in ``value`` ({} is one),
    found without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


class ProfileIn(_In):
    tenant: str
    profile_name: ProfileName
    hrv_vector: Vector
    metadata: dict[str, Any] | None = None

    _metadata = field_validator("metadata")(_check_metadata)


class ProfileUpdateIn(_In):
    hrv_vector: Vector
    metadata: dict[str, Any] | None = None

    _metadata = field_validator("metadata")(_check_metadata)


M = TypeVar("M", bound=BaseModel)


def parse_json(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "the request body is empty; expected a JSON object")
    try:
        return _untrusted.loads(body)
    except _untrusted.JsonError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(
            422, "the body must be a JSON object", details=[{"loc": ["body"], "msg": "expected an object"}]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": ["body", *err["loc"]], "msg": err["msg"].replace("Value error, ", "")}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}", details=details) from None


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise bad_query(name, f"must be an integer in {low}..{high}")
    digits = raw.lstrip("0")
    # int() raises past 4,300 digits; no limit here needs more than a few.
    if len(digits) > len(str(high)):
        raise bad_query(name, f"must be in {low}..{high}, got a {len(digits)}-digit number")
    value = int(raw)
    if not low <= value <= high:
        raise bad_query(name, f"must be in {low}..{high}, got {value}")
    return value


def query_choice(query: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = query.get(name, default)
    if raw not in choices:
        raise bad_query(name, f"must be one of {', '.join(choices)}")
    return raw


def bad_query(name: str, msg: str) -> ApiError:
    return ApiError(422, f"{name}: {msg}", details=[{"loc": ["query", name], "msg": msg}])
