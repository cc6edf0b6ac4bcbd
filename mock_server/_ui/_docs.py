"""``/docs``: Swagger UI for ``/openapi.json`` and ``/__admin/openapi.json``, from packaged files.

The Swagger UI files come from the installed ``swagger-ui-bundle`` package (nothing from a CDN);
the page and its start-up script are this package's. The fault layer serves ``/docs`` beside
``/__admin``, so docs requests are neither journaled nor faulted. The pages hold no data: the API
document is public, the admin one is fetched with the admin token the dashboard keeps in
sessionStorage, if any.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import Receive, Scope, Send

from .._faults import _inject
from .._ids import new_request_id
from ._routes import page_headers, static_bytes

# Swagger UI evaluates no inline script but sets inline styles; its bundle needs no eval.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_VENDOR = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_OWN = {"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"}


def _vendor_dir() -> Path:
    import swagger_ui_bundle  # type: ignore[import-untyped]

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def is_docs(path: str) -> bool:
    """Whether the layer should hand ``path`` to :class:`DocsApp`."""
    return path == "/docs" or path.startswith("/docs/")


class DocsApp:
    """The ASGI app answering ``/docs`` and ``/docs/<asset>`` (GET and HEAD)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes, str]] = {}

    def _file(self, name: str) -> tuple[bytes, str] | None:
        if name in self._cache:
            return self._cache[name]
        if name == "":
            found = (static_bytes("docs.html"), "text/html; charset=utf-8")
        elif name in _OWN:
            found = (static_bytes(name), _OWN[name])
        elif name in _VENDOR:
            found = ((_vendor_dir() / name).read_bytes(), _VENDOR[name])
        else:
            return None
        self._cache[name] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        name = path[len("/docs/") :] if path.startswith("/docs/") else ""
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _error(
                send, 405, f"{method} {path}: /docs answers GET and HEAD", [(b"allow", b"GET, HEAD")]
            )
            return
        found = self._file(name)
        if found is None:
            await _error(send, 404, f"no docs file {path}")
            return
        body, media = found
        headers = [(k.encode(), v.encode()) for k, v in page_headers(media).items()]
        headers = [(k, _DOCS_CSP.encode() if k == b"content-security-policy" else v) for k, v in headers]
        headers.append((b"content-length", str(len(body)).encode()))
        await _inject.send_response(send, 200, headers, b"" if method == "HEAD" else body)


async def _error(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = _inject.error_body(status, message, new_request_id())
    headers = [(b"content-type", _inject.JSON), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await _inject.send_response(send, status, headers, body)
