"""``POST /hr_generate`` and ``/hr_generate/batch``: deterministic text, optionally shaped by a
stored profile's vector; both honour ``Idempotency-Key``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import _generate
from .._auth import Principal
from .._errors import ApiError
from .._inputs import BatchIn, GenerateIn
from .._state import ApiState
from ._common import Call, json_body, json_response, now_iso
from ._idempotency import Idempotency, Made


class Generation:
    def __init__(self, state: ApiState, *, idempotent: Idempotency, wall: Callable[[], float]) -> None:
        self.state = state
        self.idempotent = idempotent
        self.wall = wall

    async def generate(self, request: Request, call: Call) -> Response:
        async def make(made: Made | None) -> Response:
            data = json_body(request, call.raw, GenerateIn)
            vector = await self._options(call, data.tenant, data.profile_name, made)
            return json_response(self._generate(call.caller, data.prompt, data, vector, call.rid))

        async def produce() -> Response:
            return await make(None)

        # Generating changes nothing: produced first, then kept (one round trip when shared).
        return await self.idempotent(request, call, produce, pure=make)

    async def batch(self, request: Request, call: Call) -> Response:
        async def make(made: Made | None) -> Response:
            data = json_body(request, call.raw, BatchIn)
            vector = await self._options(call, data.tenant, data.profile_name, made)
            results: list[dict[str, Any]] = []
            for index, prompt in enumerate(data.prompts):
                if not 1 <= len(prompt) <= 10_000:
                    msg = f"prompts[{index}]: must be 1..10000 characters, got {len(prompt)}"
                    results.append(
                        {
                            "index": index,
                            "status": "error",
                            "error": {"code": "validation_error", "message": msg, "request_id": call.rid},
                        }
                    )
                else:
                    results.append(
                        {
                            "index": index,
                            "status": "ok",
                            "result": self._generate(call.caller, prompt, data, vector, call.rid),
                        }
                    )
            return json_response({"results": results})

        async def produce() -> Response:
            return await make(None)

        # Generating changes nothing: produced first, then kept (one round trip when shared).
        return await self.idempotent(request, call, produce, pure=make)

    async def _options(
        self, call: Call, tenant: str | None, profile_name: str | None, made: Made | None
    ) -> list[float] | None:
        """The profile's vector, if one is named. ``made``: the answer is to be kept, which
        checks the profile is unchanged in the same round trip: this process's copy will do."""
        p = call.caller
        if tenant is not None and tenant != p.tenant.name:
            raise ApiError(403, "tenant must be your own tenant")
        if profile_name is None:
            return None
        if made is not None:
            made.copy = self.state.copy_of(p.tenant.name, profile_name)
            if made.copy is not None:
                return list(made.copy.hrv_vector)
        profile = await self.state.get_profile(p.tenant.name, profile_name, call.ticket)
        if profile is None:
            raise ApiError(404, f"no profile named {profile_name!r}")
        return list(profile.hrv_vector)

    def _generate(
        self, p: Principal, prompt: str, data: GenerateIn | BatchIn, vector: list[float] | None, rid: str
    ) -> dict[str, Any]:
        tenant = p.tenant.name
        content, hrv, tokens = _generate.generate(
            tenant, prompt, data.profile_name, data.max_length, data.temperature, vector
        )
        return {
            "content": content,
            "hrv_vector": hrv,
            "metadata": {
                "tenant": tenant,
                "profile_name": data.profile_name,
                "model": _generate.MODEL,
                "tokens": tokens,
                "temperature": data.temperature,
                "max_length": data.max_length,
                "request_id": rid,
                "created_at": now_iso(self.wall()),
            },
        }
