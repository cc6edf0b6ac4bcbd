"""The dashboard's routes under ``/__admin``: the page, its assets, the event stream, the admin
API's OpenAPI document and YAML conversion. (Enabling and disabling a rule is the admin API's
``PATCH /__admin/faults/{id}``: a rule field, so it holds in every process and across a reset.)

They sit behind the layer's admin access check like every admin route; only the page's static
assets are also served without a token when the fake has one, since a browser navigating to the
page cannot send a header (the page then asks for the token and sends it with every call).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._faults._events import EventHub, TooManyClients
from .._faults._journal import Filter
from .._faults._state import FaultState
from .._untrusted import BodyTooLarge, read_body
from ._openapi import admin_openapi

#: The page's static files: name, media type.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PAGE = "/__admin/ui"
#: Paths served without the admin token (static files holding no data); loopback rules still apply
#: when the fake has no token.
PUBLIC_PATHS = frozenset({PAGE, *(f"{PAGE}/{name}" for name in ASSETS)})
#: Nothing but this origin: no CDN, no inline script, no framing (the page has buttons that delete).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def static_bytes(name: str) -> bytes:
    """A file shipped in ``mock_server/_ui/static``."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def page_headers(media_type: str) -> dict[str, str]:
    return {
        "content-type": media_type,
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }


def _fail(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Exception:
    # The admin app turns AdminError into the contract's error body; imported late (it imports us).
    from .._faults._admin import AdminError

    return AdminError(status, message, details)


class Ui:
    """Handlers over one fault state."""

    def __init__(self, state: FaultState, *, max_body_bytes: int, hub: EventHub | None = None) -> None:
        self.state = state
        self.max_body_bytes = max_body_bytes
        self.hub = hub or EventHub(state.journal)
        self._files = {name: static_bytes(name) for name in ("index.html", *ASSETS)}
        self._openapi = json.dumps(admin_openapi()).encode()

    async def page(self, request: Request) -> Response:
        return Response(self._files["index.html"], headers=page_headers("text/html; charset=utf-8"))

    def asset(self, name: str) -> Any:
        body, media = self._files[name], ASSETS[name]

        async def serve(request: Request) -> Response:
            return Response(body, headers=page_headers(media))

        return serve

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def events(self, request: Request) -> Response:
        params = dict(request.query_params)
        limit_raw = params.pop("limit", None)
        limit: int | None = None
        if limit_raw not in (None, ""):
            try:
                limit = int(limit_raw)
            except ValueError:
                limit = -1
            if not 0 <= limit <= 100_000:
                raise _fail(422, "limit: must be 0..100000", [{"loc": ["limit"], "msg": "must be 0..100000"}])
        from .._faults._errors import FaultConfigError

        try:
            f = Filter.parse(params)
        except FaultConfigError as exc:
            raise _fail(422, str(exc), exc.details) from None
        last_event_id: int | None = None
        raw_id = request.headers.get("last-event-id")
        if raw_id is not None and raw_id.strip():
            try:
                last_event_id = int(raw_id.strip())
            except ValueError:
                msg = "must be a journal sequence number"
                raise _fail(422, f"Last-Event-ID: {msg}", [{"loc": ["Last-Event-ID"], "msg": msg}]) from None
        await self.state.sync()
        try:
            return self.hub.stream(f, last_event_id=last_event_id, limit=limit)
        except TooManyClients as exc:
            raise _fail(503, str(exc)) from None

    async def yaml_to_json(self, request: Request) -> Response:
        """The YAML (or JSON) text of the body as JSON, for the page's paste box; the rules
        parser then validates it when the page posts it to ``/__admin/faults``."""
        try:
            raw = await read_body(
                request.headers.get("content-length"), request.stream(), self.max_body_bytes
            )
        except BodyTooLarge as exc:
            raise _fail(413, str(exc)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(400, "the body is not UTF-8 text") from None
        try:
            return JSONResponse({"value": parse_yaml(text)})
        except ValueError as exc:
            raise _fail(400, str(exc)) from None

    async def presets(self, request: Request) -> Response:
        from .._faults._presets import PRESETS

        return JSONResponse(
            {"presets": {name: [r.to_dict() for r in rs.rules] for name, rs in PRESETS.items()}}
        )


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias bomb would expand into gigabytes of JSON."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted here", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> Any:
    """The JSON value of YAML ``text``; ValueError with the line of the mistake."""
    try:
        value = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
        # Dates and other YAML-only scalars as text: the rule parser names them if misplaced.
        return json.loads(json.dumps(value, default=str))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"not valid YAML{where}: {problem}") from None
    except (RecursionError, ValueError, TypeError):
        raise ValueError("not valid YAML: nested too deeply or not representable as JSON") from None


def ui_routes(state: FaultState, *, max_body_bytes: int) -> list[Route]:
    """The dashboard's routes, for the admin app over ``state``."""
    ui = Ui(state, max_body_bytes=max_body_bytes)
    routes = [
        Route(PAGE, ui.page, methods=["GET"]),
        *(Route(f"{PAGE}/{name}", ui.asset(name), methods=["GET"]) for name in ASSETS),
        Route(f"{PAGE}/yaml", ui.yaml_to_json, methods=["POST"]),
        Route(f"{PAGE}/presets", ui.presets, methods=["GET"]),
        Route("/__admin/events", ui.events, methods=["GET"]),
        Route("/__admin/openapi.json", ui.openapi, methods=["GET"]),
    ]
    return routes
