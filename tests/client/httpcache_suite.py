"""A Python port of the HTTP WG cache-tests engine, run against the sans-IO cache.

The test definitions are those of https://github.com/http-tests/cache-tests (BSD-3-Clause,
Copyright (c) 2018, Mark Nottingham), exported to ``httpcache_cases.json`` with node from
``tests/index.mjs`` at the commit recorded in that file. This module replays
``test-engine/server/handle-test.mjs`` (the origin), ``test-engine/client/test.mjs`` (the
checks) and ``test-engine/lib/results.mjs`` (pass, fail, dependencies) in process, with a fake
clock: a "pause" of three seconds costs nothing.

The client side is what a driver of :class:`client._httpcache.HttpCache` does, as a browser
does it through ``fetch()`` (the suite's "browser" mode: no Pragma / Cache-Control hack
headers): look up, serve or send, feed back the response, run a stale-while-revalidate
revalidation in the background, and on a dropped connection ask for a stale-if-error stand-in
or fail like a rejected ``fetch()``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client._httpcache import CachePolicy, HttpCache

CASES = Path(__file__).with_name("httpcache_cases.json")
BASE = "http://cache.test"
NO_BODY_STATUS = frozenset({204, 304})
DATE_HEADERS = frozenset({"date", "expires", "last-modified", "if-modified-since", "if-unmodified-since"})
LOCATION_HEADERS = frozenset({"location", "content-location"})
SKIP_RESPONSE_HEADERS = frozenset({"date"})
PASS_TYPES = ("pass", "yes")


def load_suites() -> list[dict[str, Any]]:
    """The exported test suites."""
    return json.loads(CASES.read_text(encoding="utf-8"))["suites"]  # type: ignore[no-any-return]


# The suite cites RFC 9111 by anchor; these are the section numbers of the published RFC.
RFC9111_SECTIONS = {
    "caching.overview": "2",
    "response.cacheability": "3",
    "storing.fields": "3.1",
    "combining.responses": "3.4",
    "caching.authenticated.responses": "3.5",
    "constructing.responses.from.caches": "4",
    "caching.negotiated.responses": "4.1",
    "expiration.model": "4.2",
    "calculating.freshness.lifetime": "4.2.1",
    "heuristic.freshness": "4.2.2",
    "serving.stale.responses": "4.2.4",
    "validation.model": "4.3",
    "validation.sent": "4.3.1",
    "validation.received": "4.3.2",
    "freshening.responses": "4.3.4",
    "head.effects": "4.3.5",
    "invalidation": "4.4",
    "delta-seconds": "1.2.2",
    "field.age": "5.1",
    "field.cache-control": "5.2",
    "cache-request-directive": "5.2.1",
    "cache-request-directive.max-age": "5.2.1.1",
    "cache-request-directive.max-stale": "5.2.1.2",
    "cache-request-directive.min-fresh": "5.2.1.3",
    "cache-request-directive.no-cache": "5.2.1.4",
    "cache-request-directive.no-store": "5.2.1.5",
    "cache-request-directive.only-if-cached": "5.2.1.7",
    "cache-response-directive": "5.2.2",
    "cache-response-directive.max-age": "5.2.2.1",
    "cache-response-directive.must-revalidate": "5.2.2.2",
    "cache-response-directive.must-understand": "5.2.2.3",
    "cache-response-directive.no-cache": "5.2.2.4",
    "cache-response-directive.no-store": "5.2.2.5",
    "cache-response-directive.private": "5.2.2.7",
    "cache-response-directive.proxy-revalidate": "5.2.2.8",
    "cache-response-directive.public": "5.2.2.9",
    "cache-response-directive.s-maxage": "5.2.2.10",
    "cache.control.extensions": "5.2.3",
    "field.expires": "5.3",
    "field.pragma": "5.4",
}
OTHER_ANCHORS = {
    "field.date": "RFC 9110 §6.6.1",
    "https://www.rfc-editor.org/rfc/rfc5861.html#section-3": "RFC 5861 §3",
    "https://www.rfc-editor.org/rfc/rfc8246.html#section-2": "RFC 8246 §2",
    "https://www.rfc-editor.org/rfc/rfc9213.html": "RFC 9213",
}


def sections(suite: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """The RFC sections a test cites (its own anchors, else its suite's)."""
    anchors = test.get("spec_anchors") or suite.get("spec_anchors") or []
    out = []
    for anchor in anchors:
        if anchor in RFC9111_SECTIONS:
            out.append(f"RFC 9111 §{RFC9111_SECTIONS[anchor]}")
        else:
            out.append(OTHER_ANCHORS.get(anchor, anchor))
    return out


def citations() -> dict[str, list[str]]:
    """Every test's cited sections, by id."""
    return {t["id"]: sections(s, t) for s in load_suites() for t in s["tests"]}


def all_tests() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every test by id, with its suite id."""
    return {t["id"]: (s["id"], t) for s in load_suites() for t in s["tests"]}


def private_subset(tests: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """The tests the issue's table counts: not CDN-only, not skipped by browsers, not checks.

    On the published results this subset has 214 tests, of which Chrome passes 173.
    """
    return [
        tid
        for tid, (_, t) in tests.items()
        if not t.get("cdn_only") and not t.get("browser_skip") and t.get("kind", "required") != "check"
    ]


class Clock:
    """Wall-clock epoch seconds that move only when told."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Disconnect(Exception):
    """The origin dropped the connection."""


class FetchFailed(Exception):
    """What a rejected fetch() is: the cache had nothing to stand in for a failed origin."""


class Assertion(Exception):
    """A check failed."""


class SetupFailure(Exception):
    """A check marked as setup failed."""


def http_date(epoch: float, rfc850: bool = False) -> str:
    t = time.gmtime(int(epoch))
    if rfc850:
        day = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[t.tm_wday]
        return time.strftime(f"{day}, %d-%b-%y %H:%M:%S GMT", t)
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", t)


def fixup(header: list[Any], resp: dict[str, str], req_config: dict[str, Any]) -> list[Any]:
    """header-fixup.mjs: integer dates become HTTP-dates relative to Server-Now; magic locations."""
    header = list(header)
    name = header[0].lower()
    server_now = int(resp.get("server-now", "0")) / 1000
    if name in DATE_HEADERS and isinstance(header[1], int) and not isinstance(header[1], bool):
        header[1] = http_date(server_now + header[1], name in req_config.get("rfc850date", []))
    base_url = resp.get("server-base-url", "")
    if name in LOCATION_HEADERS and req_config.get("magic_locations"):
        header[1] = f"{base_url}/{header[1]}" if header[1] else base_url
    return header


@dataclass
class ServerRequest:
    request_num: int
    request_method: str
    request_headers: dict[str, str]
    response_headers: list[tuple[str, str]]


@dataclass
class Origin:
    """handle-test.mjs, for one test."""

    requests: list[dict[str, Any]]
    uuid: str
    clock: Clock
    state: list[ServerRequest] = field(default_factory=list)

    def handle(self, method: str, path: str, headers: tuple[tuple[str, str], ...]) -> tuple[int, list, bytes]:
        req_headers: dict[str, str] = {}
        for k, v in headers:
            k = k.lower()
            req_headers[k] = f"{req_headers[k]}, {v}" if k in req_headers else v
        srv_num = len(self.state) + 1
        cli_num = int(req_headers.get("req-num", "0") or 0)
        num = cli_num or srv_num
        config = self.requests[num - 1]
        previous = self.requests[num - 2] if num >= 2 else {}
        if "response_pause" in config:
            self.clock.now += config["response_pause"]
        now_ms = int(self.clock.now * 1000)
        status = config.get("response_status", [200, "OK"])[0]
        if config.get("expected_type", "").endswith("validated"):
            prev_lm = _get_header(previous.get("response_headers", []), "last-modified")
            if prev_lm and req_headers.get("if-modified-since") == prev_lm:
                status = 304
            prev_etag = _get_header(previous.get("response_headers", []), "etag")
            if prev_etag and req_headers.get("if-none-match") == prev_etag:
                status = 304
            if status != 304:
                status = 999
        out: list[list[Any]] = [
            ["Server-Base-Url", path],
            ["Server-Request-Count", str(srv_num)],
            ["Client-Request-Count", str(cli_num)],
            ["Server-Now", str(now_ms)],
        ]
        current = {"server-base-url": path, "server-now": str(now_ms)}
        saved: dict[str, list[str]] = {}
        for header in config.get("response_headers", []):
            # The JS mutates the config in place, so a later request sees the fixed-up value.
            fixed = fixup(header, current, config)
            header[:] = fixed
            out.append([fixed[0], str(fixed[1])])
            if len(fixed) < 3 or fixed[2] is True:
                saved.setdefault(fixed[0], []).append(str(fixed[1]))
        names = {h[0].lower() for h in out}
        if "content-type" not in names:
            out.append(["Content-Type", "text/plain"])
        self.state.append(
            ServerRequest(cli_num, method, req_headers, [(k, ", ".join(v)) for k, v in saved.items()])
        )
        out.append(["Request-Numbers", " ".join(str(s.request_num) for s in self.state)])
        if "date" not in names:
            out.append(["Date", http_date(self.clock.now)])
        if config.get("disconnect"):
            raise Disconnect
        body = (
            b""
            if status in NO_BODY_STATUS or method == "HEAD"
            else (config.get("response_body") or self.uuid).encode()
        )
        if "content-length" not in names and status not in NO_BODY_STATUS:
            out.append(["Content-Length", str(len(config.get("response_body") or self.uuid))])
        out += [["Connection", "keep-alive"], ["Keep-Alive", "timeout=5"]]
        return status, [(k, v) for k, v in out], body


def _get_header(headers: list[list[Any]], name: str) -> Any:
    result = None
    for h in headers:
        if h[0].lower() == name:
            result = h[1]
    return result


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def as_dict(self) -> dict[str, str]:
        return {k.lower(): self.get(k) or "" for k, _ in self.headers}


def fetch(cache: HttpCache, origin: Origin, clock: Clock, method: str, url: str, headers: tuple) -> Response:
    """One call through the cache, as a driver makes it."""
    path = url[len(BASE) :]
    lk = cache.lookup(method, url, headers)
    if lk.response is not None:
        served = Response(lk.response.status, list(lk.response.headers), lk.response.body)
        if lk.background:
            sent = clock.now
            try:
                status, rh, body = origin.handle(method, path, lk.request_headers)
            except Disconnect:
                cache.on_error(lk)
            else:
                cache.on_response(lk, status, rh, body, request_time=sent, response_time=clock.now)
        return served
    sent = clock.now
    try:
        status, rh, body = origin.handle(method, path, lk.request_headers)
    except Disconnect:
        stale = cache.on_error(lk)
        if stale is None:
            raise FetchFailed("Failed to fetch") from None
        return Response(stale.status, list(stale.headers), stale.body)
    out = cache.on_response(lk, status, rh, body, request_time=sent, response_time=clock.now)
    if out.response is not None:
        return Response(out.response.status, list(out.response.headers), out.response.body)
    return Response(status, rh, body)


def _check(setup: bool, ok: bool, message: str) -> None:
    if ok:
        return
    raise SetupFailure(message) if setup else Assertion(message)


def _setup_check(rc: dict[str, Any], member: str) -> bool:
    return rc.get("setup") is True or member in rc.get("setup_tests", [])


def run_test(
    test: dict[str, Any], *, start: float = 1_700_000_000.5, policy: CachePolicy | None = None
) -> Any:
    """Run one test; ``True`` or ``[kind, message]`` as the JS engine records it."""
    test = json.loads(json.dumps(test))  # the run mutates request configs, as the JS does
    clock = Clock(start)
    uuid = "0f8c7d52-3c9e-4a57-9d2b-6f1e0e4c9a11"
    requests = test["requests"]
    origin = Origin(requests, uuid, clock)
    cache = HttpCache(policy or CachePolicy(wall_clock=clock), clock=clock)
    responses: list[Response] = []
    try:
        for idx, rc in enumerate(requests):
            url = f"{BASE}/test/{uuid}"
            if "filename" in rc:
                url += f"/{rc['filename']}"
            if "query_arg" in rc:
                url += f"?{rc['query_arg']}"
            headers: list[tuple[str, str]] = []
            prev = responses[idx - 1].as_dict() if idx else {}
            for h in rc.get("request_headers", []):
                if rc.get("magic_ims") and h[0].lower() == "if-modified-since":
                    h = fixup(h, prev, rc)
                headers.append((h[0], str(h[1])))
            if rc.get("cache") == "no-cache":
                headers.append(("Cache-Control", "max-age=0"))  # what fetch()'s "no-cache" mode sends
            elif rc.get("cache") == "no-store":
                headers.append(("Cache-Control", "no-store"))
            headers += [("Test-Name", test["name"]), ("Test-ID", test["id"]), ("Req-Num", str(idx + 1))]
            method = rc.get("request_method", "GET")
            response = fetch(cache, origin, clock, method, url, tuple(headers))
            responses.append(response)
            _check_response(rc, idx, response, uuid, method)
            clock.now += 0.005
            if rc.get("pause_after"):
                clock.now += 3
        _check_server_requests(requests, responses, origin.state)
    except SetupFailure as exc:
        return ["Setup", str(exc)]
    except Assertion as exc:
        return ["Assertion", str(exc)]
    except FetchFailed as exc:
        return ["TypeError", str(exc)]
    return True


def _check_response(rc: dict[str, Any], idx: int, response: Response, uuid: str, method: str) -> None:
    num = idx + 1
    res_num_text = response.get("server-request-count")
    res_num = int(res_num_text) if res_num_text and res_num_text.isdigit() else None
    numbers = response.get("request-numbers")
    if numbers:
        items = numbers.split(" ")
        _check(True, len(items) == len(set(items)), "retry")
    if "expected_type" in rc:
        setup = _setup_check(rc, "expected_type")
        if rc["expected_type"] == "cached":
            if not (response.status == 304 and res_num is None):
                _check(
                    setup, res_num is not None and res_num < num, f"Response {num} does not come from cache"
                )
        if rc["expected_type"] == "not_cached":
            _check(setup, res_num == num, f"Response {num} comes from cache")
    if "expected_status" in rc:
        if rc["expected_status"] is not None:
            _check(
                _setup_check(rc, "expected_status"),
                response.status == rc["expected_status"],
                f"Response {num} status is {response.status}, not {rc['expected_status']}",
            )
    elif "response_status" in rc:
        _check(
            True, response.status == rc["response_status"][0], f"Response {num} status is {response.status}"
        )
    elif response.status == 999:
        _check(
            _setup_check(rc, "expected_type"),
            False,
            f"Request {num} should have been conditional, but it was not.",
        )
    else:
        _check(True, response.status == 200, f"Response {num} status is {response.status}, not 200")
    if "expected_response_headers" in rc:
        setup = _setup_check(rc, "expected_response_headers")
        for header in rc["expected_response_headers"]:
            if isinstance(header, str):
                _check(setup, response.has(header), f"Response {num} {header} header not present.")
            elif len(header) > 2:
                _check(setup, response.has(header[0]), f"Response {num} {header[0]} header not present.")
                value = response.get(header[0])
                if header[1] == "=":
                    ok = value == response.get(header[2])
                else:
                    ok = _parse_int(value) > header[2]
                _check(setup, ok, f"Response {num} header {header[0]} is {value}")
            else:
                expected = fixup(header, response.as_dict(), rc)[1]
                got = response.get(header[0])
                _check(
                    setup, got == expected, f'Response {num} header {header[0]} is "{got}", not "{expected}"'
                )
    if "expected_response_headers_missing" in rc:
        setup = _setup_check(rc, "expected_response_headers_missing")
        for header in rc["expected_response_headers_missing"]:
            if isinstance(header, str):
                _check(
                    setup,
                    not response.has(header),
                    f'Response {num} includes unexpected header {header}: "{response.get(header)}"',
                )
            # The JS form [name, value] reads response.headers[name], always undefined on a
            # fetch() Headers object, so it never fails; neither does it here.
    if rc.get("check_body") is False:
        return
    text = response.body.decode("utf-8", "replace")
    if "expected_response_text" in rc:
        if rc["expected_response_text"] is not None:
            _check(
                _setup_check(rc, "expected_response_text"),
                text == rc["expected_response_text"],
                f'Response body is "{text}", not "{rc["expected_response_text"]}"',
            )
    elif rc.get("response_body") is not None:
        _check(True, text == rc["response_body"], f'Response body is "{text}", not "{rc["response_body"]}"')
    elif response.status not in NO_BODY_STATUS and method != "HEAD":
        _check(True, text == uuid, f'Response body is "{text}", not "{uuid}"')


def _parse_int(value: str | None) -> float:
    digits = ""
    for ch in (value or "").strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else float("nan")


def _check_server_requests(
    requests: list[dict[str, Any]], responses: list[Response], state: list[ServerRequest]
) -> None:
    test_idx = 0
    for i, rc in enumerate(requests):
        validating: list[str] = []
        response = responses[i]
        server = state[test_idx] if test_idx < len(state) else None
        num = i + 1
        setup = _setup_check(rc, "expected_type")
        if "expected_type" in rc:
            if rc["expected_type"] == "cached":
                continue
            if rc["expected_type"] == "not_cached":
                _check(
                    setup,
                    server is not None and server.request_num == num,
                    f"Response {num} comes from cache",
                )
            if rc["expected_type"] == "etag_validated":
                validating.append("if-none-match")
            if rc["expected_type"] == "lm_validated":
                validating.append("if-modified-since")
        test_idx += 1
        for name in validating:
            _check(setup, server is not None, f"request {num} wasn't sent to server")
            assert server is not None
            _check(setup, name in server.request_headers, f"request {num} doesn't have {name} header")
        if "expected_request_headers" in rc:
            s2 = _setup_check(rc, "expected_request_headers")
            for header in rc["expected_request_headers"]:
                if isinstance(header, str):
                    _check(
                        s2,
                        server is not None and header.lower() in server.request_headers,
                        f"Request {num} {header} missing",
                    )
                else:
                    got = server.request_headers.get(header[0].lower()) if server else None
                    _check(
                        s2,
                        got == header[1],
                        f'Request {num} header {header[0]} is "{got}", not "{header[1]}"',
                    )
        if "expected_request_headers_missing" in rc:
            s3 = _setup_check(rc, "expected_request_headers_missing")
            for header in rc["expected_request_headers_missing"]:
                if isinstance(header, str):
                    _check(
                        s3,
                        server is None or header.lower() not in server.request_headers,
                        f"Request {num} {header} present",
                    )
                else:
                    got = server.request_headers.get(header[0].lower()) if server else None
                    _check(s3, got != header[1], f"Request {num} header {header[0]} is {got}")
        if server is not None:
            for name, value in server.response_headers:
                if name.lower() in SKIP_RESPONSE_HEADERS:
                    continue
                got = response.get(name)
                _check(True, got == value, f'Response {num} header {name} is "{got}", not "{value}"')
        if "expected_method" in rc:
            _check(
                _setup_check(rc, "expected_method"),
                server is not None and server.request_method == rc["expected_method"],
                f"Request {num} had method {server.request_method if server else None}",
            )


def determine(tests: dict[str, tuple[str, dict[str, Any]]], results: dict[str, Any], tid: str) -> str:
    """results.mjs determineTestResult, dependencies honoured."""
    test = tests[tid][1]
    result = results.get(tid)
    if result is None:
        return "untested"
    for dep in test.get("depends_on", []) or []:
        if determine(tests, results, dep) not in PASS_TYPES:
            return "dependency_fail"
    if isinstance(result, list) and result[0] == "Setup":
        return "setup_fail"
    kind = test.get("kind", "required")
    if kind == "required":
        return "pass" if result is True else "fail"
    if kind == "optimal":
        return "pass" if result is True else "optional_fail"
    return "yes" if result is True else "no"


def run_all(start: float = 1_700_000_000.5) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Every test's raw result."""
    tests = all_tests()
    return tests, {tid: run_test(t, start=start) for tid, (_, t) in tests.items()}
