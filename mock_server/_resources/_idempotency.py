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
from .._state import PENDING, ApiState, CopyStale, Keep, KeptBefore
from .._store import IdempotencyRecord, Profile
from ._common import Call

IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_PATTERN)
# Headers of a first response that a replay repeats; the rest (request id, rate limits) are fresh.
_REPLAYED_HEADERS = ("content-type", "location", "etag", "last-modified")


class Idempotency:
    def __init__(self, state: ApiState, *, wall: Callable[[], float]) -> None:
        self.state = state
        self.wall = wall

    async def __call__(
        self,
        request: Request,
        call: Call,
        produce: Callable[[], Awaitable[Response]],
        *,
        pure: Callable[[Made], Awaitable[Response]] | None = None,
        writes: Callable[[Keeper], Awaitable[Response]] | None = None,
    ) -> Response:
        """``produce``'s answer, kept for repeats of the request's key.

        ``pure``: ``produce`` for an answer whose making changes nothing (generation). With a
        shared state it is produced first, then kept (or the one kept before replayed) in one
        round trip, instead of a claim before and a write after. It may read a profile from the
        process's copy, noting it in the :class:`Made` it is given: the answer is then kept only
        if that copy is current (else it is made again). ``writes``: ``produce`` as one state
        write that can keep the answer itself (given a :class:`Keeper`; it raises
        ``KeptBefore`` when the key had one): with a shared state, that round trip is all."""
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
        if pure is not None and state.shared:
            return await self._produced_first(call, pure, tenant, key, fingerprint)
        if writes is not None and state.shared:
            return await self._kept_with_write(call, writes, Keeper(key, fingerprint, self.wall), tenant)
        while True:
            record = await state.claim_idempotency(tenant, key, call.ticket)
            if record is PENDING:
                await state.wait_idempotency(tenant, key)
                continue
            break
        if isinstance(record, IdempotencyRecord):
            return _replay(record, fingerprint)
        # This request holds the key until it has an answer.
        try:
            response = await produce()
        except BaseException:
            await state.release_idempotency(tenant, key)
            raise
        if 200 <= response.status_code < 300:
            await state.put_idempotency(tenant, key, _record(response, fingerprint, self.wall()))
        else:
            await state.release_idempotency(tenant, key)
        return response

    async def _produced_first(
        self,
        call: Call,
        produce: Callable[[Made], Awaitable[Response]],
        tenant: str,
        key: str,
        fingerprint: str,
    ) -> Response:
        """The answer produced, then kept in one round trip unless the key has one already.
        Repeats racing each other each produce an answer; the first one kept is the answer all
        of them get (one answer, and producing changed nothing)."""
        state = self.state
        while True:
            made = Made()
            try:
                response = await produce(made)
            except ApiError:
                # Not kept; but a key kept before answers with its record, or a 422 for another
                # body, whatever this one's own error.
                found = await state.find_idempotency(tenant, key, call.ticket)
                if found is not None:
                    return _replay(found, fingerprint)
                raise
            if not 200 <= response.status_code < 300:
                return response
            record = _record(response, fingerprint, self.wall())
            try:
                while True:
                    kept_before = await state.keep_idempotency(tenant, key, record, call.ticket, made.copy)
                    if kept_before is not PENDING:
                        break
                    await state.wait_idempotency(tenant, key)
            except CopyStale:
                continue  # made from a stale copy, now refreshed: made again
            if isinstance(kept_before, IdempotencyRecord):
                return _replay(kept_before, fingerprint)
            return response

    async def _kept_with_write(
        self, call: Call, writes: Callable[[Keeper], Awaitable[Response]], keeper: Keeper, tenant: str
    ) -> Response:
        """The answer of a write that keeps it under the key in its own round trip; the answer
        kept before when the key had one (one effect, one answer)."""
        state = self.state
        while True:
            try:
                return await writes(keeper)
            except KeptBefore as kept:
                if kept.record is not None:
                    return _replay(kept.record, keeper.fingerprint)
                await state.wait_idempotency(tenant, keeper.key)  # held by a request still running
            except ApiError:
                # Not kept (nothing was written); a key kept before answers with its record, or
                # a 422 for another body, whatever this one's own error.
                found = await state.find_idempotency(tenant, keeper.key, call.ticket)
                if found is not None:
                    return _replay(found, keeper.fingerprint)
                raise


class Made:
    """What an answer was made from: ``copy``, the process's copy of a profile it read (see
    ``ApiState.copy_of``), which must still be current when the answer is kept."""

    __slots__ = ("copy",)

    def __init__(self) -> None:
        self.copy: Profile | None = None


class Keeper:
    """What a write needs to keep its answer under the request's ``Idempotency-Key``."""

    __slots__ = ("key", "fingerprint", "_wall")

    def __init__(self, key: str, fingerprint: str, wall: Callable[[], float]) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self._wall = wall

    def keep(self, answer: Callable[[Profile], Response]) -> Keep:
        """A :class:`Keep` for a write whose answer, for the profile written, is ``answer``."""

        def record_of(profile: Profile) -> IdempotencyRecord:
            return _record(answer(profile), self.fingerprint, self._wall())

        return Keep(self.key, record_of)


def _record(response: Response, fingerprint: str, now: float) -> IdempotencyRecord:
    kept = {k: v for k, v in response.headers.items() if k in _REPLAYED_HEADERS}
    return IdempotencyRecord(fingerprint, response.status_code, kept, bytes(response.body), now)


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    """The kept answer again; a 422 when the request's body is another."""
    if not hmac.compare_digest(record.fingerprint, fingerprint):
        raise ApiError(
            422,
            "this Idempotency-Key was used with a different request body",
            details=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with a different body"}],
        )
    headers = dict(record.headers)
    headers["Idempotent-Replayed"] = "true"
    return Response(record.body, status_code=record.status, headers=headers)
