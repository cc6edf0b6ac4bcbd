"""The error tree and the mapping of every lower-layer exception onto it."""

from __future__ import annotations

import http.client
import inspect
import json

import pytest
import requests
import requests.exceptions
import urllib3.exceptions as u3

import client
from client import _exceptions as ex
from client._redaction import redact, register_secret

_ABSTRACT_FALLBACK = "request failed"


def _classes(module: object, base: type[BaseException]) -> list[type[BaseException]]:
    return sorted(
        {
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, base) and not issubclass(c, Warning)
        },
        key=lambda c: c.__name__,
    )


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` built whatever its constructor wants."""
    if issubclass(cls, u3.MaxRetryError):
        return cls(None, "/x?api_key=s3cret-value", u3.NewConnectionError(None, "refused"))
    if issubclass(cls, u3.NameResolutionError):
        return cls("h", None, OSError("nope"))
    if issubclass(cls, u3.NewConnectionError):
        return cls(None, "refused")
    if issubclass(cls, u3.HostChangedError):
        return cls(None, "/x")
    if issubclass(cls, u3.RequestError):
        return cls(None, "/x", "failed")
    if issubclass(cls, u3.PoolError):
        return cls(None, "pool")
    if issubclass(cls, u3.ProxyError):
        return cls("proxy", OSError("x"))
    if issubclass(cls, u3.InvalidChunkLength):
        return cls(type("R", (), {"tell": lambda self: 0, "length_remaining": 2})(), b"zz")
    if issubclass(cls, u3.IncompleteRead | http.client.IncompleteRead):
        return cls(1, 2) if issubclass(cls, u3.IncompleteRead) else cls(b"", 2)
    if issubclass(cls, u3.HeaderParsingError):
        return cls([], b"")
    if issubclass(cls, u3.LocationParseError):
        return cls("http://[x")
    if issubclass(cls, u3.ProxySchemeUnknown | u3.URLSchemeUnknown):
        return cls("gopher")
    if issubclass(cls, json.JSONDecodeError):
        return cls("bad", "doc", 0)
    if issubclass(cls, requests.exceptions.JSONDecodeError):
        return cls("bad", "doc", 0)
    return cls("boom")


REQUESTS_CLASSES = _classes(requests.exceptions, BaseException)
URLLIB3_CLASSES = [c for c in _classes(u3, BaseException) if c.__module__ == "urllib3.exceptions"]


@pytest.mark.parametrize("cls", REQUESTS_CLASSES, ids=lambda c: c.__name__)
def test_every_requests_exception_is_mapped(cls):
    """Each exception class in requests.exceptions maps to a specific class of the tree."""
    exc = _instance(cls)
    mapped = ex.map_exception(exc, method="GET", url="http://h/x")
    assert isinstance(mapped, ex.ApiError)
    assert not mapped.message.startswith(_ABSTRACT_FALLBACK) or cls is requests.exceptions.RequestException
    assert any(c in ex._MAPPING for c in cls.__mro__)


@pytest.mark.parametrize("cls", URLLIB3_CLASSES, ids=lambda c: c.__name__)
def test_every_urllib3_exception_is_mapped(cls):
    """Each urllib3 exception class, should one leak through, maps to a class of the tree."""
    mapped = ex.map_exception(_instance(cls), method="GET", url="http://h/x")
    assert isinstance(mapped, ex.ApiError)
    assert any(c in ex._MAPPING for c in cls.__mro__)


@pytest.mark.parametrize(
    ("exc", "expected", "sent"),
    [
        pytest.param(requests.exceptions.ConnectTimeout("t"), ex.ConnectTimeout, False, id="connect-timeout"),
        pytest.param(requests.exceptions.ReadTimeout("t"), ex.ReadTimeout, True, id="read-timeout"),
        pytest.param(
            requests.exceptions.ConnectionError(
                u3.MaxRetryError(None, "/", u3.NewConnectionError(None, "refused"))
            ),
            ex.ConnectionFailed,
            False,
            id="refused-not-sent",
        ),
        pytest.param(
            requests.exceptions.ConnectionError(u3.ProtocolError("aborted", ConnectionResetError())),
            ex.ConnectionFailed,
            True,
            id="reset-after-send",
        ),
        pytest.param(requests.exceptions.SSLError("tls"), ex.ConnectionFailed, False, id="tls"),
        pytest.param(
            requests.exceptions.ChunkedEncodingError("cut"), ex.ConnectionFailed, True, id="truncated"
        ),
    ],
)
def test_transport_errors_know_whether_the_request_was_sent(exc, expected, sent):
    """Connection errors before any byte left are 'not sent', so any method may retry them."""
    mapped = ex.map_exception(exc)
    assert type(mapped) is expected
    assert mapped.request_sent is sent


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(requests.exceptions.InvalidURL("x"), ex.RequestInvalid, id="invalid-url"),
        pytest.param(requests.exceptions.MissingSchema("x"), ex.RequestInvalid, id="missing-schema"),
        pytest.param(requests.exceptions.JSONDecodeError("bad", "doc", 0), ex.ResponseInvalid, id="json"),
        pytest.param(requests.exceptions.TooManyRedirects("x"), ex.TransportError, id="redirects"),
        pytest.param(requests.exceptions.RetryError("x"), ex.RetriesExhausted, id="retry-error"),
    ],
)
def test_most_specific_class_wins(exc, expected):
    """The mapping follows the exception's MRO, so subclasses get their own target."""
    assert type(ex.map_exception(exc)) is expected


def test_mapped_errors_stay_catchable_as_requests_exceptions():
    """Code written for plain requests keeps catching the client's errors."""
    assert issubclass(ex.ConnectTimeout, requests.exceptions.ConnectTimeout)
    assert issubclass(ex.ReadTimeout, requests.exceptions.Timeout)
    assert issubclass(ex.ConnectionFailed, requests.exceptions.ConnectionError)
    assert issubclass(ex.HttpError, requests.exceptions.HTTPError)
    assert issubclass(ex.DeadlineExceeded, requests.exceptions.Timeout)
    assert issubclass(ex.ApiError, requests.exceptions.RequestException)


def test_raise_from_keeps_the_cause():
    """A mapped error raised ``from`` its cause keeps it as __cause__."""
    original = requests.exceptions.ReadTimeout("slow")
    with pytest.raises(ex.ReadTimeout) as info:
        try:
            raise original
        except requests.RequestException as exc:
            raise ex.map_exception(exc) from exc
    assert info.value.__cause__ is original


def test_messages_never_contain_secrets():
    """URL query secrets, header values and registered secrets are masked in messages."""
    register_secret("super-secret-token-123")
    exc = requests.exceptions.ConnectionError(
        "failed for /x?api_key=demo-key-abc with Authorization: Bearer super-secret-token-123"
    )
    mapped = ex.map_exception(exc, method="GET", url="http://u:pw@h/x?token=abc&page=2")
    text = str(mapped)
    for secret in ("demo-key-abc", "super-secret-token-123", "token=abc", "u:pw"):
        assert secret not in text
    assert "page=2" in text


def test_redact_masks_header_lines():
    """``X-API-Key: ...`` in free text is masked."""
    assert "k3y" not in redact("headers {'X-API-Key': 'k3y'}")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ex.BadRequest),
        (401, ex.Unauthorized),
        (403, ex.Forbidden),
        (404, ex.NotFound),
        (409, ex.Conflict),
        (412, ex.PreconditionFailed),
        (413, ex.BadRequest),
        (422, ex.ValidationFailed),
        (429, ex.RateLimited),
        (500, ex.ServerError),
        (503, ex.ServerError),
        (418, ex.HttpError),
    ],
)
def test_status_maps_to_http_error_subclass(status, cls):
    """Each error status raises its own HttpError subclass with status, body and request id."""
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(
        {
            "error": {
                "code": "x",
                "message": "m",
                "request_id": "rid-9",
                "details": [{"loc": ["a"], "msg": "b"}],
            }
        }
    ).encode()
    err = ex.error_for_response(r, retry_after=2.0)
    assert type(err) is cls
    assert (err.status, err.request_id, err.code, err.retry_after) == (status, "rid-9", "x", 2.0)
    assert err.body == {
        "error": {"code": "x", "message": "m", "request_id": "rid-9", "details": [{"loc": ["a"], "msg": "b"}]}
    }
    assert err.details == [{"loc": ["a"], "msg": "b"}]


def test_non_json_error_body_still_maps():
    """An error response with an HTML body maps by status and keeps the text."""
    r = requests.Response()
    r.status_code = 502
    r._content = b"<html>bad gateway</html>"
    r.headers["X-Request-ID"] = "rid-2"
    err = ex.error_for_response(r)
    assert isinstance(err, ex.ServerError)
    assert err.request_id == "rid-2"


def test_docstring_draws_every_class():
    """The module docstring's tree names every exception class of the module."""
    doc = ex.__doc__ or ""
    for name in ex.__all__:
        obj = getattr(ex, name)
        if isinstance(obj, type):
            assert name in doc, name


def test_exported_from_package():
    """The whole tree is importable from ``client``."""
    for name in ("ApiError", "HttpError", "RateLimited", "TransportError", "CircuitOpen", "ResponseInvalid"):
        assert getattr(client, name) is getattr(ex, name)
