"""The admin API (``/__admin``): fault rules, the journal, resets, compliance and metrics.

JSON in and out; errors use the contract's error body, a bad rule is a 422 naming the field
(``details: [{"loc": [...], "msg": ...}]``) and leaves the rules as they were. Bodies are read
as they stream, up to the layer's ``max_body_bytes`` (413 past it), and parsed as strictly as
the API's. Access control is the layer's job: this app is only reached by callers it let through.

The handlers work on a :class:`FaultState` (rules, journal, metrics, held requests), the object
the request path shares; they never touch the layer itself. Reads first :meth:`FaultState.sync`,
so that with a shared backend they see what other processes did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .._errors import code_for
from .._ids import new_request_id
from .._untrusted import BodyTooLarge, JsonError, loads, read_body, session_id
from ._compliance import Thresholds, analyse
from ._errors import FaultConfigError
from ._journal import Filter
from ._model import Rule
from ._parse import parse_rule, parse_rules
from ._state import FaultState, RuleExists, StateUnavailable

_MAX_WAIT_S = 300.0
#: The fields PATCH /__admin/faults/{id} changes in place.
_PATCHABLE = frozenset({"enabled"})


class AdminError(Exception):
    """An admin call that fails with a status and the contract's error body."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def _error(
    status: int, message: str, details: list[dict[str, Any]] | None = None, code: str | None = None
) -> JSONResponse:
    error: dict[str, Any] = {
        "code": code or code_for(status),
        "message": message,
        "request_id": new_request_id(),
    }
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


def _invalid(exc: FaultConfigError) -> AdminError:
    return AdminError(422, str(exc), exc.details)


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request.headers.get("content-length"), request.stream(), limit)
    except BodyTooLarge as exc:
        raise AdminError(413, str(exc)) from None


async def _json(request: Request, limit: int) -> Any:
    raw = await _body(request, limit)
    if not raw:
        raise AdminError(400, "a JSON body is required")
    try:
        # NaN and Infinity parse as floats, as they always have here; the rule parser rejects them.
        return loads(raw, parse_constant=None)
    except JsonError as exc:
        raise AdminError(400, f"the body is not valid JSON: {exc}") from None


def _int_param(request: Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise AdminError(
            422, f"{name}: must be an integer", [{"loc": [name], "msg": "must be an integer"}]
        ) from None
    if not lo <= value <= hi:
        msg = f"must be {lo}..{hi}"
        raise AdminError(422, f"{name}: {msg}", [{"loc": [name], "msg": msg}])
    return value


def _filter(params: Mapping[str, Any], loc: tuple[str, ...] = ()) -> Filter:
    try:
        return Filter.parse(params, loc)
    except FaultConfigError as exc:
        raise _invalid(exc) from None


class Admin:
    """Handlers of the admin API over one fault state."""

    def __init__(self, state: FaultState, *, max_body_bytes: int = 1024 * 1024) -> None:
        # The dashboard, its event stream and this API's OpenAPI document (imported here: the
        # dashboard's package imports this one).
        from .._ui import ui_routes

        self.state = state
        self.max_body_bytes = max_body_bytes
        self.ui_routes = ui_routes(state, max_body_bytes=max_body_bytes)

    # -- rules ----------------------------------------------------------------------------------

    async def list_faults(self, request: Request) -> Response:
        state = self.state
        await state.sync()
        stats = await state.stats()
        return JSONResponse(
            {
                "seed": state.seed,
                "rules": [r.to_dict() for r in state.rules],
                "stats": {r.id: stats.get(r.id, {"matched": 0, "fired": 0}) for r in state.rules},
            }
        )

    def _free_id(self, taken: set[str]) -> str:
        n = len(taken) + 1
        while f"rule-{n}" in taken:
            n += 1
        return f"rule-{n}"

    async def add_faults(self, request: Request) -> Response:
        body = await _json(request, self.max_body_bytes)
        await self.state.sync()
        taken = {r.id for r in self.state.rules}
        bulk = isinstance(body, Mapping) and "rules" in body
        raw_rules = body["rules"] if bulk else [body]
        if bulk:
            extra = set(body) - {"rules"}
            if extra:
                name = sorted(extra)[0]
                raise AdminError(422, f"{name}: unknown field", [{"loc": [name], "msg": "unknown field"}])
            if not isinstance(raw_rules, list) or not raw_rules:
                raise AdminError(
                    422,
                    "rules: must be a non-empty list",
                    [{"loc": ["rules"], "msg": "must be a non-empty list"}],
                )
        new: list[Rule] = []
        for i, raw in enumerate(raw_rules):
            loc: tuple[str | int, ...] = ("rules", i) if bulk else ()
            try:
                rule = parse_rule(raw, loc, default_id=self._free_id(taken))
            except FaultConfigError as exc:
                raise _invalid(exc) from None
            if rule.id in taken:
                raise AdminError(409, f"rule {rule.id!r} exists; PUT /__admin/faults/{rule.id} replaces it")
            taken.add(rule.id)
            new.append(rule)
        try:
            await self.state.add_rules(new)
        except RuleExists as exc:
            raise AdminError(
                409, f"rule {exc.rule_id!r} exists; PUT /__admin/faults/{exc.rule_id} replaces it"
            ) from None
        if bulk:
            return JSONResponse({"rules": [r.to_dict() for r in new]}, status_code=201)
        return JSONResponse(
            new[0].to_dict(), status_code=201, headers={"Location": f"/__admin/faults/{new[0].id}"}
        )

    async def replace_faults(self, request: Request) -> Response:
        body = await _json(request, self.max_body_bytes)
        try:
            rules = parse_rules(body)
        except FaultConfigError as exc:
            raise _invalid(exc) from None
        state = self.state
        await state.replace_rules(rules.rules, rules.seed)
        return JSONResponse({"seed": state.seed, "rules": [r.to_dict() for r in state.rules]})

    async def get_fault(self, request: Request) -> Response:
        await self.state.sync()
        rule = self.state.get_rule(request.path_params["rule_id"])
        if rule is None:
            raise AdminError(404, f"no rule {request.path_params['rule_id']!r}")
        return JSONResponse(rule.to_dict())

    async def put_fault(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        body = await _json(request, self.max_body_bytes)
        if isinstance(body, Mapping) and "id" in body and body["id"] != rule_id:
            msg = f"must be the id in the path ({rule_id!r}) or absent"
            raise AdminError(422, f"id: {msg}", [{"loc": ["id"], "msg": msg}])
        try:
            rule = parse_rule(body, default_id=rule_id)
        except FaultConfigError as exc:
            raise _invalid(exc) from None
        existed = await self.state.put_rule(rule)
        return JSONResponse(rule.to_dict(), status_code=200 if existed else 201)

    async def patch_fault(self, request: Request) -> Response:
        """Change a rule in place, keeping its position and its counters: only ``enabled``."""
        rule_id = request.path_params["rule_id"]
        body = await _json(request, self.max_body_bytes)
        if not isinstance(body, Mapping):
            raise AdminError(422, "must be an object", [{"loc": [], "msg": "must be an object"}])
        for key in body:
            if key not in _PATCHABLE:
                # Other fields change what the rule does: a PUT replaces it (counters restart).
                msg = f"cannot be patched; patchable: {', '.join(sorted(_PATCHABLE))} (PUT replaces a rule)"
                raise AdminError(422, f"{key}: {msg}", [{"loc": [key], "msg": msg}])
        enabled = body.get("enabled")
        if "enabled" in body and not isinstance(enabled, bool):
            msg = "must be true or false"
            raise AdminError(422, f"enabled: {msg}", [{"loc": ["enabled"], "msg": msg}])
        state = self.state
        if isinstance(enabled, bool):
            rule = await state.set_enabled(rule_id, enabled)
        else:
            await state.sync()
            rule = state.get_rule(rule_id)
        if rule is None:
            raise AdminError(404, f"no rule {rule_id!r}")
        return JSONResponse(rule.to_dict())

    async def delete_fault(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        if not await self.state.delete_rule(rule_id):
            raise AdminError(404, f"no rule {rule_id!r}")
        return Response(status_code=204)

    async def reset_faults(self, request: Request) -> Response:
        state = self.state
        await state.reset_rules()
        return JSONResponse({"seed": state.seed, "rules": [r.to_dict() for r in state.rules]})

    # -- journal --------------------------------------------------------------------------------

    def _query_filter(self, request: Request) -> Filter:
        params = {k: v for k, v in request.query_params.items() if k != "limit"}
        return _filter(params)

    async def list_requests(self, request: Request) -> Response:
        f = self._query_filter(request)
        limit = _int_param(request, "limit", 1, self.state.journal.size)
        await self.state.sync()
        entries = self.state.journal.select(f, limit)
        return JSONResponse({"count": len(entries), "requests": [e.to_dict() for e in entries]})

    async def count_requests(self, request: Request) -> Response:
        f = self._query_filter(request)
        await self.state.sync()
        return JSONResponse({"count": self.state.journal.count(f)})

    async def wait_requests(self, request: Request) -> Response:
        body = await _json(request, self.max_body_bytes)
        if not isinstance(body, Mapping):
            raise AdminError(422, "must be an object", [{"loc": [], "msg": "must be an object"}])
        for key in body:
            if key not in ("filter", "count", "timeout_s"):
                raise AdminError(422, f"{key}: unknown field", [{"loc": [key], "msg": "unknown field"}])
        raw_filter = body.get("filter") or {}
        if not isinstance(raw_filter, Mapping):
            raise AdminError(
                422, "filter: must be an object", [{"loc": ["filter"], "msg": "must be an object"}]
            )
        f = _filter(raw_filter, ("filter",))
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise AdminError(
                422, "count: must be an integer >= 1", [{"loc": ["count"], "msg": "must be an integer >= 1"}]
            )
        timeout = body.get("timeout_s", 5.0)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 <= timeout <= _MAX_WAIT_S
        ):
            msg = f"must be a number 0..{_MAX_WAIT_S:g}"
            raise AdminError(422, f"timeout_s: {msg}", [{"loc": ["timeout_s"], "msg": msg}])
        await self.state.sync()
        journal = self.state.journal
        arrived, seen = await journal.wait(f, count, float(timeout))
        if not arrived:
            raise AdminError(408, f"{seen} of {count} matching requests arrived within {timeout:g} s")
        entries = journal.select(f)
        return JSONResponse({"count": len(entries), "requests": [e.to_dict() for e in entries]})

    async def clear_requests(self, request: Request) -> Response:
        dropped = await self.state.clear_journal(request.query_params.get("session"))
        return JSONResponse({"deleted": dropped})

    # -- the rest -------------------------------------------------------------------------------

    async def reset(self, request: Request) -> Response:
        return JSONResponse(await self.state.reset(request.query_params.get("session")))

    async def compliance(self, request: Request) -> Response:
        thresholds = Thresholds(
            max_attempts=_int_param(request, "max_attempts", 1, 1000) or 5,
            outage_after=_int_param(request, "outage_after", 1, 1000) or 5,
        )
        await self.state.sync()
        report = analyse(
            self.state.journal,
            # Entries keep a long session bounded; so must the one they are compared with.
            session=session_id(request.query_params.get("session")),
            thresholds=thresholds,
        )
        return JSONResponse(report)

    async def metrics(self, request: Request) -> Response:
        text = await self.state.render_metrics()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def index(self, request: Request) -> Response:
        return JSONResponse(
            {"endpoints": [f"{' '.join(sorted(r.methods or ()))} {r.path}" for r in _routes(self)]}
        )


def _routes(admin: Admin) -> list[Route]:
    a = admin
    return [
        Route("/__admin", a.index, methods=["GET"]),
        Route("/__admin/faults", a.list_faults, methods=["GET"]),
        Route("/__admin/faults", a.add_faults, methods=["POST"]),
        Route("/__admin/faults", a.replace_faults, methods=["PUT"]),
        Route("/__admin/faults/reset", a.reset_faults, methods=["POST"]),
        Route("/__admin/faults/{rule_id}", a.get_fault, methods=["GET"]),
        Route("/__admin/faults/{rule_id}", a.put_fault, methods=["PUT"]),
        Route("/__admin/faults/{rule_id}", a.patch_fault, methods=["PATCH"]),
        Route("/__admin/faults/{rule_id}", a.delete_fault, methods=["DELETE"]),
        Route("/__admin/requests", a.list_requests, methods=["GET"]),
        Route("/__admin/requests", a.clear_requests, methods=["DELETE"]),
        Route("/__admin/requests/count", a.count_requests, methods=["GET"]),
        Route("/__admin/requests/wait", a.wait_requests, methods=["POST"]),
        Route("/__admin/reset", a.reset, methods=["POST"]),
        Route("/__admin/compliance", a.compliance, methods=["GET"]),
        Route("/__admin/metrics", a.metrics, methods=["GET"]),
        *a.ui_routes,
    ]


async def _on_admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return _error(exc.status, exc.message, exc.details)


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    response = _error(503, str(exc), code="state_unavailable")
    response.headers["Retry-After"] = "1"
    return response


async def _on_crash(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception; the caller gets the contract's body, never a traceback.
    return _error(500, "the admin API hit an unexpected error; see the fake's log")


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"no admin endpoint {request.method} {request.url.path}")
    return _error(exc.status_code, str(exc.detail))


def build_admin(state: FaultState, *, max_body_bytes: int = 1024 * 1024) -> ASGIApp:
    """The admin ASGI app over ``state``; request bodies past ``max_body_bytes`` get a 413."""
    return Starlette(
        routes=_routes(Admin(state, max_body_bytes=max_body_bytes)),
        exception_handlers={
            AdminError: _on_admin_error,
            HTTPException: _on_http_error,
            StateUnavailable: _on_unavailable,
            Exception: _on_crash,
        },
    )
