"""``Idempotency-Key`` on POSTs: the first answer to a key is kept and replayed for repeats.

A repeat with another body is a 422. Concurrent repeats of one key wait for the first request
(whichever process it runs on, with a shared state) and then replay its answer: one effect,
one answer. Only 2xx answers are kept; after an error the next repeat runs afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from .._errors import ApiError
from .._openapi import IDEMPOTENCY_PATTERN
from .._state import PENDING, ApiState
from .._store import IdempotencyRecord
from ._common import Call

IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_PATTERN)
# Headers of a first response that a replay repeats; the rest (request id, rate limits) are fresh.
_REPLAYED_HEADERS = ("content-type", "location", "etag", "last-modified")


class Idempotency:
    def __init__(self, state: ApiState, *, wall: Callable[[], float]) -> None:
        self.state = state
        self.wall = wall

    async def __call__(
        self, request: Request, call: Call, produce: Callable[[], Awaitable[Response]]
    ) -> Response:
        key = request.headers.get("idempotency-key")
        if key is None:
            return await produce()
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(
                400,
                "Idempotency-Key must be 1..255 printable ASCII characters,"
                " not starting or ending with a space",
            )
        tenant = call.caller.tenant.name
        fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + call.raw).hexdigest()
        state = self.state
        while True:
            record = await state.claim_idempotency(tenant, key, call.ticket)
            if record is PENDING:
                await state.wait_idempotency(tenant, key)
                continue
            break
        if isinstance(record, IdempotencyRecord):
            if not hmac.compare_digest(record.fingerprint, fingerprint):
                raise ApiError(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    details=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with a different body"}],
                )
            headers = dict(record.headers)
            headers["Idempotent-Replayed"] = "true"
            return Response(record.body, status_code=record.status, headers=headers)
        # This request holds the key until it has an answer.
        try:
            response = await produce()
        except BaseException:
            await state.release_idempotency(tenant, key)
            raise
        if 200 <= response.status_code < 300:
            kept = {k: v for k, v in response.headers.items() if k in _REPLAYED_HEADERS}
            await state.put_idempotency(
                tenant,
                key,
                IdempotencyRecord(fingerprint, response.status_code, kept, bytes(response.body), self.wall()),
            )
        else:
            await state.release_idempotency(tenant, key)
        return response
