"""HAR 1.2 recording, written as each exchange completes, and reading, recovering a cut file.

The file is always one JSON document whose last bytes are :data:`TAIL` (``\\n]}}\\n``): each new
entry is written, in one ``write``, over the old tail, as ``,\\n{entry}`` followed by a new tail.
So between two writes the file is a complete HAR; a process killed (``kill -9``) in the middle of
one leaves the entries before it whole, followed by part of one entry, which :func:`read_har`
drops (it recovers the entries that parse, in order). Nothing is buffered in the process: an
entry is in the file (the page cache) once :meth:`HarWriter.append` returns. Recording to a file
that already holds a HAR carries on after its entries.

What is recorded is what the upstream answered, before any fault: the replay injects faults of its
own. No credential is written: the values of ``Authorization``, ``Proxy-Authorization``,
``X-API-Key``, ``Cookie`` and ``Set-Cookie`` (and the cookies parsed from them), query and form
parameters whose names look secret (the journal's rule: ``api_key``, ``token``, ``password``...),
and JSON body fields that hold secrets (``access_token``, ``client_secret``...) become
``REDACTED``. Response bodies are stored decoded (``gzip``, ``deflate`` and ``br``), as HAR
wants; a body that is not UTF-8 text is stored as base64 (``"encoding": "base64"``; a request
body, which HAR 1.2 gives no encoding field, says so in ``_encoding``). A body over the size
limit is not kept (its entry says so in a ``comment``), so recording never holds more than the
limit per exchange in flight.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from .._faults._journal import _secret_name
from ._forward import RawHeaders

try:  # brotli is optional: without it a br body is stored as it came, base64
    import brotli  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    brotli = None

REDACTED = "REDACTED"
TAIL = b"\n]}}\n"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"})
DEFAULT_BODY_LIMIT = 4 * 1024 * 1024
# JSON fields whose values are credentials. Narrower than the query rule, which also takes "auth"
# and "sig": in a JSON body those words are more often "author" and "signal" than secrets.
_SECRET_FIELD = re.compile(r"(password|passwd|secret|token|apikey|credential|signature|privatekey)")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_TEXT_TYPES = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|javascript|x-www-form-urlencoded)\b)")


class HarError(ValueError):
    """A file that is not a HAR this module can read; the message names the file and why."""


# -- redaction -------------------------------------------------------------------------------------


def redact_header(name: str, value: str) -> str:
    return REDACTED if name.lower() in SECRET_HEADERS else value


def redact_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, REDACTED if _secret_name(name) else value) for name, value in pairs]


def redact_url(url: str) -> str:
    """``url`` without user info, with the values of secret-looking query parameters replaced."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        out = []
        for piece in query.split("&"):
            name, sep, _ = piece.partition("=")
            out.append(f"{name}={REDACTED}" if sep and _secret_name(name) else piece)
        query = "&".join(out)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secret_field(name: str) -> bool:
    return _SECRET_FIELD.search(_NOT_ALNUM.sub("", name.lower())) is not None


def redact_json(value: Any, found: set[str] | None = None) -> tuple[Any, bool]:
    """``value`` with the string values of secret fields replaced; and whether any was. The
    values replaced are added to ``found``."""
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, dict):
            out = {}
            for key, item in node.items():
                if isinstance(key, str) and _secret_field(key) and isinstance(item, str | int) and item != "":
                    out[key] = REDACTED
                    changed = True
                    if found is not None and isinstance(item, str):
                        found.add(item)
                else:
                    out[key] = walk(item)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(value), changed


def _cookies(headers: Iterable[tuple[str, str]], name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, value in headers:
        if key.lower() != name:
            continue
        pieces = value.split(";") if name == "cookie" else [value.split(";", 1)[0]]
        for piece in pieces:
            cookie_name = piece.partition("=")[0].strip()
            if cookie_name:
                out.append({"name": cookie_name, "value": REDACTED})
    return out


# -- bodies ------------------------------------------------------------------------------------------


def _mime(headers: Iterable[tuple[str, str]]) -> str:
    for key, value in headers:
        if key.lower() == "content-type":
            return value
    return ""


def _as_text(body: bytes, mime: str) -> str | None:
    """``body`` as text when it is UTF-8 and looks like text (else None: store it as base64)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _TEXT_TYPES.match(mime.lower()) or not any(ch < " " and ch not in "\t\r\n" for ch in text[:4096]):
        return text
    return None


def _redacted_text(text: str, mime: str, found: set[str]) -> str:
    """``text`` with the secrets a form or JSON body names replaced (and added to ``found``)."""
    kind = mime.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        if any(_secret_name(name) for name, _ in pairs):
            found.update(v for n, v in pairs if _secret_name(n) and v)
            return "&".join(f"{quote_plus(n)}={quote_plus(v)}" for n, v in redact_pairs(pairs))
        return text
    if kind == "application/json" or kind.endswith("+json"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return text
        redacted, changed = redact_json(data, found)
        return json.dumps(redacted, ensure_ascii=False) if changed else text
    return text


#: Secrets shorter than this are not searched for elsewhere in an entry: too likely to be
#: ordinary text ("1", "abc"); the field that carried them is redacted all the same.
_MIN_SECRET = 4


def request_secrets(headers: Iterable[tuple[str, str]], url: str) -> set[str]:
    """Every credential a request carries, in each form it may be echoed in: the whole header
    values, the token after the scheme, Basic's encoded and decoded parts, cookie values, and
    secret-looking query values (as sent and decoded)."""
    found: set[str] = set()
    for name, value in headers:
        lower = name.lower()
        if lower not in SECRET_HEADERS:
            continue
        found.add(value)
        if lower in ("cookie", "set-cookie"):
            pieces = value.split(";") if lower == "cookie" else [value.split(";", 1)[0]]
            found.update(p.partition("=")[2].strip() for p in pieces)
            continue
        scheme, _, rest = value.strip().partition(" ")
        if rest:
            found.add(rest.strip())
            if scheme.lower() == "basic":
                try:
                    user, _, password = (
                        base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
                    )
                except (ValueError, UnicodeDecodeError):
                    continue
                found.update((f"{user}:{password}", password))
    query = urlsplit(url).query
    for piece in query.split("&") if query else ():
        name, sep, value = piece.partition("=")
        if sep and _secret_name(name):
            found.add(value)
            found.add(unquote_plus(value))
    return found


# A query parameter inside any text (a URL a body echoes): its value goes if its name looks secret.
_QUERY_PAIR = re.compile(r"([?&;])([^=&?#\s\"'\\]+)=([^&#\s\"'\\]*)")


def _redact_pair(found: re.Match[str]) -> str:
    if found.group(3) and found.group(3) != REDACTED and _secret_name(found.group(2)):
        return f"{found.group(1)}{found.group(2)}={REDACTED}"
    return found.group(0)


def scrub(node: Any, secrets: Iterable[str]) -> Any:
    """``node`` (an entry) with every occurrence of each secret, as it is and percent-encoded, in
    any string replaced: a body or a header may echo a credential the request carried."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:
            forms.update((secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]))
    ordered = sorted(forms, key=len, reverse=True)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            if "=" in value:
                value = _QUERY_PAIR.sub(_redact_pair, value)
            for form in ordered:
                if form in value:
                    value = value.replace(form, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(node)


def _decoded(raw: bytes, encoding: str) -> bytes | None:
    """The body under ``Content-Encoding: encoding``; None when it cannot be decoded."""
    names = [token.strip().lower() for token in encoding.split(",") if token.strip()]
    data = raw
    try:
        for name in reversed(names):
            if name in ("gzip", "x-gzip", "deflate"):
                # 47: accept gzip and zlib headers; deflate is zlib-wrapped, or raw in some servers.
                try:
                    data = zlib.decompress(data, 47)
                except zlib.error:
                    data = zlib.decompress(data, -15)
            elif name == "br" and brotli is not None:
                data = brotli.decompress(data)
            elif name != "identity":
                return None
    except (zlib.error, ValueError, Exception):  # noqa: B014 - brotli raises its own error type
        return None
    return data


def _header_list(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": redact_header(name, value)} for name, value in headers]


def _texts(raw: RawHeaders) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the writer -------------------------------------------------------------------------------------


def _dumps(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _version() -> str:
    try:
        return importlib.metadata.version("resonance-harness")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0"


_VERSION = _version()


class HarWriter:
    """Appends entries to a HAR file, each one complete in the file when :meth:`append` returns."""

    def __init__(self, path: str | Path, *, creator: str = "mock-server", version: str = _VERSION) -> None:
        self.path = Path(path)
        previous: list[dict[str, Any]] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            previous = read_har(self.path).entries
        head = {"log": {"version": "1.2", "creator": {"name": creator, "version": version}, "pages": []}}
        # The head without its closing braces, then the entries array as the last member.
        prefix = json.dumps(head, separators=(",", ":"))[:-2].encode() + b',"entries":['
        pieces = [prefix]
        for i, entry in enumerate(previous):
            pieces.append((b",\n" if i else b"\n") + _dumps(entry))
        start = b"".join(pieces)
        # The file as it starts (with the entries of an earlier recording, if any) is written
        # aside and then put in place: a kill meanwhile leaves the old file as it was.
        aside = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(aside, "wb") as out:
                out.write(start + TAIL)
                out.flush()
                os.fsync(out.fileno())
            os.replace(aside, self.path)
            self._file = open(self.path, "r+b", buffering=0)  # noqa: SIM115 - kept open while recording
        except OSError as exc:
            raise HarError(f"{self.path}: cannot write the recording: {exc.strerror or exc}") from None
        self._end = len(start)
        self.count = len(previous)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0 :]

    def append(self, entry: Mapping[str, Any]) -> None:
        piece = (b",\n" if self.count else b"\n") + _dumps(entry)
        self._file.seek(self._end)
        self._write_all(piece + TAIL)
        self._end += len(piece)
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()


class HarRecorder:
    """The forwarder's tap: builds one HAR entry per exchange and appends it when it completes.

    ``body_limit`` is the most bytes of each body kept while an exchange is in flight.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
        wall: Any = time.time,
        clock: Any = time.monotonic,
    ) -> None:
        if body_limit < 0:
            raise ValueError(f"body_limit: must be 0 or more, got {body_limit}")
        self.writer = HarWriter(path)
        self.body_limit = body_limit
        self._wall = wall
        self._clock = clock

    @property
    def path(self) -> Path:
        return self.writer.path

    def begin(self, method: str, url: str, http_version: str, headers: RawHeaders) -> _Exchange:
        return _Exchange(self, method, url, http_version, headers)

    def close(self) -> None:
        self.writer.close()


class _Body:
    __slots__ = ("data", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.data: bytearray | None = bytearray()
        self.size = 0
        self.limit = limit

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.data is not None:
            if len(self.data) + len(chunk) > self.limit:
                self.data = None  # over the limit: not kept at all, rather than kept in part
            else:
                self.data += chunk


class _Exchange:
    def __init__(
        self, recorder: HarRecorder, method: str, url: str, http_version: str, headers: RawHeaders
    ) -> None:
        self.recorder = recorder
        self.method = method
        self.url = url
        self.http_version = http_version
        self.headers = _texts(headers)
        self.wall = recorder._wall()
        self.started = recorder._clock()
        self.answered: float | None = None
        self.request = _Body(recorder.body_limit)
        self.response = _Body(recorder.body_limit)
        self.status = 0
        self.reason = ""
        self.response_version = "HTTP/1.1"
        self.response_headers: list[tuple[str, str]] = []
        self.done = False
        self.secrets = request_secrets(self.headers, url)

    def request_body(self, chunk: bytes) -> None:
        self.request.add(chunk)

    def response_start(self, status: int, reason: str, http_version: str, headers: RawHeaders) -> None:
        self.answered = self.recorder._clock()
        self.status, self.reason, self.response_version = status, reason, http_version
        self.response_headers = _texts(headers)
        self.secrets |= request_secrets(
            [(k, v) for k, v in self.response_headers if k.lower() == "set-cookie"], ""
        )

    def response_body(self, chunk: bytes) -> None:
        self.response.add(chunk)

    def finish(self, *, complete: bool) -> None:
        # An exchange the upstream never answered, or broke off, has nothing to replay.
        if self.done:
            return
        self.done = True
        if complete and self.answered is not None:
            self.recorder.writer.append(self.entry())

    def entry(self) -> dict[str, Any]:
        now = self.recorder._clock()
        answered = self.answered if self.answered is not None else now
        wait_ms = round((answered - self.started) * 1000, 3)
        receive_ms = round((now - answered) * 1000, 3)
        query = urlsplit(self.url).query
        request: dict[str, Any] = {
            "method": self.method,
            "url": redact_url(self.url),
            "httpVersion": self.http_version,
            "cookies": _cookies(self.headers, "cookie"),
            "headers": _header_list(self.headers),
            "queryString": [
                {"name": n, "value": v} for n, v in redact_pairs(parse_qsl(query, keep_blank_values=True))
            ],
            "headersSize": -1,
            "bodySize": self.request.size,
        }
        if self.request.size:
            request["postData"] = self._post_data()
        entry: dict[str, Any] = {
            "startedDateTime": iso(self.wall),
            "time": round(wait_ms + receive_ms, 3),
            "request": request,
            "response": {
                "status": self.status,
                "statusText": self.reason,
                "httpVersion": self.response_version,
                "cookies": _cookies(self.response_headers, "set-cookie"),
                "headers": _header_list(self.response_headers),
                "content": self._content(),
                "redirectURL": _location(self.response_headers),
                "headersSize": -1,
                "bodySize": self.response.size,
            },
            "cache": {},
            "timings": {
                "blocked": -1,
                "dns": -1,
                "connect": -1,
                "send": 0,
                "wait": wait_ms,
                "receive": receive_ms,
                "ssl": -1,
            },
        }
        return dict(scrub(entry, self.secrets))

    def _post_data(self) -> dict[str, Any]:
        mime = _mime(self.headers)
        out: dict[str, Any] = {"mimeType": mime}
        body = self.request.data
        if body is None:
            out["text"] = ""
            out["comment"] = _not_kept(self.request.size, self.recorder.body_limit)
            return out
        text = _as_text(bytes(body), mime)
        if text is None:
            out["text"] = base64.b64encode(body).decode("ascii")
            out["_encoding"] = "base64"
            return out
        text = _redacted_text(text, mime, self.secrets)
        out["text"] = text
        if mime.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
            out["params"] = [{"name": n, "value": v} for n, v in parse_qsl(text, keep_blank_values=True)]
        return out

    def _content(self) -> dict[str, Any]:
        mime = _mime(self.response_headers)
        raw = self.response.data
        content: dict[str, Any] = {"size": self.response.size, "mimeType": mime}
        if raw is None:
            content["comment"] = _not_kept(self.response.size, self.recorder.body_limit)
            content["_notRecorded"] = True
            return content
        body = bytes(raw)
        encoding = next((v for k, v in self.response_headers if k.lower() == "content-encoding"), "")
        if encoding:
            decoded = _decoded(body, encoding)
            if decoded is None or len(decoded) > self.recorder.body_limit:
                # Kept as it came on the wire; the replay sends it back with its encoding.
                content["text"] = base64.b64encode(body).decode("ascii")
                content["encoding"] = "base64"
                content["_encoded"] = True
                return content
            content["compression"] = len(decoded) - len(body)
            body = decoded
        content["size"] = len(body)
        text = _as_text(body, mime)
        if text is None:
            content["text"] = base64.b64encode(body).decode("ascii")
            content["encoding"] = "base64"
        elif body:
            content["text"] = _redacted_text(text, mime, self.secrets)
        return content


def _not_kept(size: int, limit: int) -> str:
    return f"body not recorded: {size} bytes, over the {limit}-byte limit"


def _location(headers: Iterable[tuple[str, str]]) -> str:
    for key, value in headers:
        if key.lower() == "location":
            return value
    return ""


# -- the reader ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HarLog:
    """The entries of a HAR file; ``recovered`` when the file was cut short and some were dropped."""

    entries: list[dict[str, Any]]
    recovered: bool = False


def read_har(path: str | Path) -> HarLog:
    """The entries of the HAR file at ``path``, recovering those before a cut (see the module
    docstring); raises :class:`HarError` naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise HarError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise HarError(f"{path}: not a HAR file: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise HarError(f"{path}: not a HAR file: nested too deeply") from None
    except ValueError as exc:
        entries = _recover(text)
        if entries is None:
            raise HarError(f"{path}: not a HAR file: not JSON ({exc})") from None
        return HarLog(entries, recovered=True)
    if not isinstance(data, dict) or not isinstance(data.get("log"), dict):
        raise HarError(f"{path}: not a HAR file: no log object")
    entries = data["log"].get("entries")
    if not isinstance(entries, list):
        raise HarError(f"{path}: not a HAR file: log.entries must be a list")
    for i, entry in enumerate(entries):
        _check_entry(path, i, entry)
    return HarLog(entries)


_ENTRIES = re.compile(r'"entries"\s*:\s*\[')


def _recover(text: str) -> list[dict[str, Any]] | None:
    """The whole entries at the start of a cut file's entries array; None if there is none."""
    found = _ENTRIES.search(text)
    if found is None or not text.lstrip().startswith("{"):
        return None
    decoder = json.JSONDecoder()
    pos = found.end()
    out: list[dict[str, Any]] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break  # the entry the cut went through
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("request"), dict)
            and isinstance(entry.get("response"), dict)
        ):
            out.append(entry)
    return out


def _check_entry(path: Path, i: int, entry: Any) -> None:
    where = f"{path}: log.entries[{i}]"
    if not isinstance(entry, dict):
        raise HarError(f"{where}: must be an object")
    request, response = entry.get("request"), entry.get("response")
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("url"), str)
        or not isinstance(request.get("method"), str)
    ):
        raise HarError(f"{where}.request: needs method and url")
    if not isinstance(response, dict) or not isinstance(response.get("status"), int):
        raise HarError(f"{where}.response: needs an integer status")
