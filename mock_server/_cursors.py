"""Opaque page cursors for ``GET /profiles``: the tenant and the last name, signed.

The signing key is per server: random at start unless the configuration carries one (workers
of one server must share it, or a cursor from one would be refused by the next). A cursor is
``base64url(JSON).tag``; anything else, even with a valid tag, is a 400 naming the cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets

from ._errors import ApiError

KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh random signing key."""
    return secrets.token_bytes(KEY_BYTES)


def _bad(why: str) -> ApiError:
    return ApiError(400, f"cursor: {why}; start again without one")


class Cursors:
    """Seals and opens cursors with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def rekey(self, key: bytes) -> None:
        """Sign with ``key`` from now on (the key a shared state holds, taken at start-up)."""
        self._key = key

    def _tag(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:16]

    def seal(self, data: bytes) -> str:
        """A cursor carrying ``data`` (any bytes: tests seal malformed ones)."""
        payload = base64.urlsafe_b64encode(data).decode().rstrip("=")
        return f"{payload}.{self._tag(payload)}"

    def encode(self, tenant: str, after: str) -> str:
        """The cursor of the page after profile ``after`` of ``tenant``."""
        data = json.dumps({"t": tenant, "a": after}, separators=(",", ":"), ensure_ascii=False)
        return self.seal(data.encode())

    def decode(self, cursor: str, tenant: str) -> str:
        """The profile name ``cursor`` continues after; a 400 unless this server issued it to ``tenant``."""
        payload, _, tag = cursor.partition(".")
        if not payload.isascii() or not hmac.compare_digest(self._tag(payload).encode(), tag.encode()):
            raise _bad("not a cursor this server issued")
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
            raise _bad("malformed") from None
        if not isinstance(data, dict) or not isinstance(data.get("a"), str):
            raise _bad("malformed")
        if data.get("t") != tenant:
            raise _bad("issued to another tenant")
        return str(data["a"])
