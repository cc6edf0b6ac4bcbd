"""The sans-IO cache's behaviour, driven as an engine drives it: each test cites its RFC section.

No I/O: ``fetch`` below is the engine's loop (lookup, serve or send, on_response / on_error)
with a scripted origin and a fake wall clock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from client._httpcache import Action, CachePolicy, HttpCache, Lookup

URL = "http://api.test/profiles/demo/p1"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(clock):
    def make(**policy) -> HttpCache:
        return HttpCache(CachePolicy(wall_clock=clock, **policy))

    return make


@pytest.fixture
def cache(make) -> HttpCache:
    return make()


def date(clock: Clock, offset: float = 0) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.now + offset))


class Gone(Exception):
    """The origin could not be reached."""


@dataclass
class Result:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    cache_status: str
    sent: tuple[tuple[str, str], ...] | None  # what reached the origin; None: nothing did
    lookup: Lookup

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def from_origin(self) -> bool:
        return self.sent is not None and self.cache_status in ("miss", "bypass")


def sent_header(sent, name):
    values = [v for k, v in sent or () if k.lower() == name.lower()]
    return ", ".join(values) if values else None


class Origin:
    """A scripted origin: responses (status, headers, body) or Gone, one per request that reaches it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.script: list = []
        self.seen: list[tuple[str, str, tuple]] = []

    def respond(self, method, url, headers):
        self.seen.append((method, url, headers))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, hdrs, body = item
        if not any(k.lower() == "date" for k, _ in hdrs):
            hdrs = (*hdrs, ("Date", date(self.clock)))
        return status, hdrs, body


@pytest.fixture
def origin(clock) -> Origin:
    return Origin(clock)


def fetch(cache, origin, *, method="GET", url=URL, headers=(), credential="", delay=0.0, background=True):
    lk = cache.lookup(method, url, headers, credential=credential)
    if lk.response is not None:
        r = lk.response
        sent = None
        if lk.background and background:
            sent = lk.request_headers
            run_background(cache, origin, lk)
        return Result(r.status, r.headers, r.body, r.cache_status, sent, lk)
    sent_at = origin.clock.now
    origin.clock.advance(delay)
    try:
        status, hdrs, body = origin.respond(method, url, lk.request_headers)
    except Gone:
        stale = cache.on_error(lk)
        if stale is None:
            raise
        return Result(stale.status, stale.headers, stale.body, "stale", lk.request_headers, lk)
    out = cache.on_response(lk, status, hdrs, body, request_time=sent_at, response_time=origin.clock.now)
    if out.response is not None:
        r = out.response
        return Result(r.status, r.headers, r.body, out.cache_status, lk.request_headers, lk)
    return Result(status, hdrs, body, out.cache_status, lk.request_headers, lk)


def run_background(cache, origin, lk):
    sent_at = origin.clock.now
    try:
        status, hdrs, body = origin.respond(lk.method, lk.url, lk.request_headers)
    except Gone:
        cache.on_error(lk)
        return
    cache.on_response(lk, status, hdrs, body, request_time=sent_at, response_time=origin.clock.now)


def ok(body=b"v1", status=200, **headers):
    return (status, tuple((k.replace("_", "-"), v) for k, v in headers.items()), body)


# -- storing (RFC 9111 §3) --------------------------------------------------------------------


def test_fresh_hit_serves_the_stored_response_with_age(cache, origin, clock):
    """RFC 9111 §4.2 / §5.1: a fresh stored response is served without the origin, with an Age."""
    origin.script = [ok(Cache_Control="max-age=60", X_Thing="a")]
    first = fetch(cache, origin)
    clock.advance(10)
    hit = fetch(cache, origin)
    assert first.cache_status == "miss" and first.lookup.action is Action.MISS
    assert hit.sent is None and hit.cache_status == "hit" and hit.lookup.action is Action.HIT
    assert hit.body == b"v1" and hit.header("X-Thing") == "a" and hit.header("Age") == "10"
    assert len(origin.seen) == 1


def test_expired_response_goes_back_to_the_origin(cache, origin, clock):
    """RFC 9111 §4.2: past its freshness lifetime a response is not reused without validation."""
    origin.script = [ok(Cache_Control="max-age=30"), ok(b"v2", Cache_Control="max-age=30")]
    fetch(cache, origin)
    clock.advance(31)
    assert fetch(cache, origin).body == b"v2"
    assert len(origin.seen) == 2


def test_no_store_response_is_never_stored(cache, origin):
    """RFC 9111 §5.2.2.5: no-store keeps the response out, whatever its freshness."""
    origin.script = [ok(Cache_Control="max-age=60, No-Store"), ok()]
    fetch(cache, origin)
    fetch(cache, origin)
    assert len(origin.seen) == 2 and len(cache) == 0


def test_no_store_response_drops_what_it_supersedes(cache, origin, clock):
    """RFC 9111 §4.3.3: a new full response replaces the stored one; a no-store one is not kept either."""
    origin.script = [ok(Cache_Control="max-age=1", ETag='"a"'), ok(b"v2", Cache_Control="no-store")]
    fetch(cache, origin)
    clock.advance(2)
    fetch(cache, origin)
    assert len(cache) == 0


def test_request_no_store_bypasses_the_cache(cache, origin):
    """RFC 9111 §5.2.1.5: a request with no-store is not stored (nor, here, served from the cache)."""
    origin.script = [ok(Cache_Control="max-age=60"), ok(b"v2", Cache_Control="max-age=60")]
    fetch(cache, origin)
    r = fetch(cache, origin, headers=(("Cache-Control", "no-store"),))
    assert r.lookup.action is Action.BYPASS and r.body == b"v2" and r.cache_status == "bypass"
    assert fetch(cache, origin).body == b"v1"


@pytest.mark.parametrize("status", [200, 203, 204, 299, 400, 404, 410, 500, 502, 503, 504, 599])
def test_any_final_status_with_explicit_freshness_is_stored(cache, origin, status):
    """RFC 9111 §3: a final status is storable when explicit freshness (max-age, Expires) allows."""
    origin.script = [ok(b"", status, Cache_Control="max-age=60")]
    fetch(cache, origin)
    r = fetch(cache, origin)
    assert r.sent is None and r.status == status


@pytest.mark.parametrize("status", [206, 304])
def test_partial_and_not_modified_are_not_stored(cache, origin, status):
    """RFC 9111 §3.3 / §4.3.3: a 206 (partial storage unimplemented) or 304 is not stored as such."""
    origin.script = [ok(b"", status, Cache_Control="max-age=60"), ok()]
    fetch(cache, origin)
    assert len(cache) == 0


def test_error_status_without_freshness_is_not_stored(cache, origin):
    """RFC 9111 §3, §4.2.2: a 500 is not heuristically cacheable, so without max-age it is not stored."""
    origin.script = [ok(b"", 500, Last_Modified=date(origin.clock, -86400))]
    fetch(cache, origin)
    assert len(cache) == 0


def test_must_understand_overrides_no_store_for_known_statuses(cache, origin):
    """RFC 9111 §5.2.2.3: must-understand with a status the cache knows lets it ignore no-store."""
    origin.script = [
        ok(Cache_Control="max-age=60, no-store, must-understand"),
        ok(b"", 599, Cache_Control="max-age=60, no-store, must-understand"),
    ]
    fetch(cache, origin)
    assert fetch(cache, origin).sent is None
    fetch(cache, origin, url=URL + "x")
    assert len(cache) == 1


def test_hop_by_hop_and_connection_listed_fields_are_not_stored(cache, origin):
    """RFC 9111 §3.1: Connection, the fields it lists, and the other hop-by-hop fields are not stored."""
    origin.script = [
        ok(
            Cache_Control="max-age=60",
            Connection="a, close",
            A="1",
            B="2",
            Keep_Alive="timeout=5",
            Transfer_Encoding="chunked",
            Set_Cookie="s=1",
        )
    ]
    fetch(cache, origin)
    hit = fetch(cache, origin)
    names = {k.lower() for k, _ in hit.headers}
    assert {"connection", "a", "keep-alive", "transfer-encoding"}.isdisjoint(names)
    assert hit.header("B") == "2" and hit.header("Set-Cookie") == "s=1"


def test_qualified_no_cache_fields_are_never_served_from_the_cache(cache, origin):
    """RFC 9111 §5.2.2.4: fields named by no-cache="..." are not reused without revalidation.

    The cache stores the response without them: the miss hands the caller the origin's full
    response, and later hits never carry the fields.
    """
    origin.script = [
        ok(Cache_Control='max-age=60, no-cache="X-Secret, Set-Cookie"', X_Secret="s", Set_Cookie="c")
    ]
    miss = fetch(cache, origin)
    hit = fetch(cache, origin)
    assert miss.header("X-Secret") == "s"
    assert hit.sent is None and hit.header("X-Secret") is None and hit.header("Set-Cookie") is None


def test_unqualified_no_cache_revalidates_every_use(cache, origin):
    """RFC 9111 §5.2.2.4: no-cache stores the response but each use sends a conditional request."""
    origin.script = [ok(Cache_Control="max-age=600, no-cache", ETag='"e1"'), ok(b"", 304, ETag='"e1"')]
    fetch(cache, origin)
    r = fetch(cache, origin)
    assert sent_header(r.sent, "If-None-Match") == '"e1"'
    assert r.cache_status == "revalidated" and r.body == b"v1"


def test_nothing_to_judge_freshness_by_and_no_validator_is_not_stored(cache, origin):
    """RFC 9111 §4.2.2 with no Last-Modified: never fresh, never revalidatable, so not kept."""
    origin.script = [ok(), ok()]
    fetch(cache, origin)
    assert len(cache) == 0


def test_private_responses_are_stored_and_s_maxage_ignored(cache, origin, clock):
    """RFC 9111 §5.2.2.7 / §5.2.2.10: a private cache stores private responses and ignores s-maxage."""
    origin.script = [ok(Cache_Control="private, s-maxage=3600, max-age=10"), ok(b"v2")]
    fetch(cache, origin)
    assert fetch(cache, origin).sent is None
    clock.advance(11)
    assert fetch(cache, origin).body == b"v2"


def test_oversized_and_unbuffered_bodies_are_not_stored(make, origin):
    """Policy: bodies over max_entry_bytes, or not buffered (body=None), are not kept."""
    cache = make(max_entry_bytes=4)
    origin.script = [ok(b"0123456789", Cache_Control="max-age=60")]
    fetch(cache, origin)
    assert len(cache) == 0
    lk = cache.lookup("GET", URL)
    assert not cache.on_response(lk, 200, (("Cache-Control", "max-age=60"),), None).stored


# -- freshness (RFC 9111 §4.2) ----------------------------------------------------------------


def test_max_age_beats_expires(cache, origin, clock):
    """RFC 9111 §4.2.1: max-age takes precedence over Expires."""
    origin.script = [ok(Cache_Control="max-age=3600", Expires=date(clock, -7200))]
    fetch(cache, origin)
    clock.advance(100)
    assert fetch(cache, origin).sent is None


def test_invalid_max_age_means_stale_even_with_expires(cache, origin):
    """RFC 9111 §4.2.1: invalid freshness information (max-age=-1) is treated as stale."""
    origin.script = [ok(Cache_Control="max-age=-1", Expires=date(origin.clock, 3600), ETag='"a"'), ok()]
    fetch(cache, origin)
    assert fetch(cache, origin).sent is not None


def test_huge_max_age_is_capped_not_rejected(cache, origin, clock):
    """RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31, still fresh."""
    origin.script = [ok(Cache_Control="max-age=99999999999999999999")]
    fetch(cache, origin)
    clock.advance(10**8)
    assert fetch(cache, origin).sent is None


def test_expires_minus_date(cache, origin, clock):
    """RFC 9111 §4.2.1: with no max-age, the lifetime is Expires minus Date."""
    origin.script = [ok(Date=date(clock), Expires=date(clock, 30)), ok(b"v2")]
    fetch(cache, origin)
    clock.advance(29)
    assert fetch(cache, origin).sent is None
    clock.advance(2)
    assert fetch(cache, origin).body == b"v2"


def test_invalid_date_does_not_discard_expires(cache, origin, clock):
    """RFC 9111 §4.2.1 / RFC 9110 §6.6.1: an invalid Date gives way to the receipt time; Expires counts."""
    origin.script = [ok(Date="foo", Expires=date(clock, 30))]
    fetch(cache, origin)
    clock.advance(20)
    assert fetch(cache, origin).sent is None


@pytest.mark.parametrize(
    "expires",
    ["0", "Thu, 18 Aug 2050 02:01:18 UTC", "never"],
)
def test_invalid_expires_is_in_the_past(cache, origin, expires):
    """RFC 9111 §5.3: an invalid Expires, "0" in particular, means already expired."""
    origin.script = [ok(Expires=expires, ETag='"a"'), ok()]
    fetch(cache, origin)
    assert fetch(cache, origin).sent is not None


def test_several_expires_lines_mean_stale(cache, origin, clock):
    """RFC 9111 §4.2.1: two Expires lines: the response is considered stale."""
    origin.script = [ok(b"", 200, ETag='"a"') for _ in range(2)]
    origin.script[0] = (
        200,
        (("Expires", date(clock, 60)), ("Expires", date(clock, 90)), ("ETag", '"a"')),
        b"",
    )
    fetch(cache, origin)
    assert fetch(cache, origin).sent is not None


def test_heuristic_freshness_is_a_tenth_of_the_last_modified_age(cache, origin, clock):
    """RFC 9111 §4.2.2: 10% of the time since Last-Modified (here 1000 s: fresh for 100 s)."""
    origin.script = [ok(Last_Modified=date(clock, -1000)), ok(b"v2")]
    fetch(cache, origin)
    clock.advance(99)
    assert fetch(cache, origin).sent is None
    clock.advance(2)
    assert fetch(cache, origin).sent is not None


def test_heuristic_freshness_is_capped(make, origin, clock):
    """RFC 9111 §4.2.2: the heuristic lifetime is capped (heuristic_max, one day by default)."""
    cache = make(heuristic_max=60)
    origin.script = [ok(Last_Modified=date(clock, -(10**7))), ok(b"v2")]
    fetch(cache, origin)
    clock.advance(61)
    assert fetch(cache, origin).sent is not None


def test_heuristics_only_for_heuristically_cacheable_statuses_or_public(cache, origin, clock):
    """RFC 9111 §4.2.2 / RFC 9110 §15.1: 404 yes, 599 no, 599 with public yes."""
    lm = date(clock, -86400)
    origin.script = [
        ok(b"", 404, Last_Modified=lm),
        ok(b"", 599, Last_Modified=lm),
        ok(b"", 599, Last_Modified=lm, Cache_Control="public"),
    ]
    fetch(cache, origin, url=URL + "/a")
    fetch(cache, origin, url=URL + "/b")
    fetch(cache, origin, url=URL + "/c")
    assert fetch(cache, origin, url=URL + "/a").sent is None
    assert fetch(cache, origin, url=URL + "/c").sent is None
    assert cache.lookup("GET", URL + "/b").action is Action.MISS


def test_age_header_shortens_freshness(cache, origin, clock):
    """RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay counts against max-age."""
    origin.script = [ok(Cache_Control="max-age=30", Age="25"), ok(b"v2")]
    fetch(cache, origin, delay=1)
    clock.advance(3)
    hit = fetch(cache, origin)
    assert hit.sent is None and hit.header("Age") == "29"
    clock.advance(2)
    assert fetch(cache, origin).body == b"v2"


def test_apparent_age_from_date(cache, origin, clock):
    """RFC 9111 §4.2.3: apparent_age = response_time - Date; a response dated 7200 s ago is stale."""
    origin.script = [ok(Cache_Control="max-age=3600", Date=date(clock, -7200), ETag='"a"'), ok()]
    fetch(cache, origin)
    assert fetch(cache, origin).sent is not None


def test_current_age_is_the_larger_of_apparent_and_corrected(cache, origin, clock):
    """RFC 9111 §4.2.3: corrected_initial_age = max(apparent_age, corrected_age_value), plus resident time."""
    origin.script = [ok(Cache_Control="max-age=3600", Date=date(clock, -100), Age="10")]
    fetch(cache, origin, delay=2)
    clock.advance(5)
    assert fetch(cache, origin).header("Age") == str(100 + 2 + 5)


def test_multiple_age_values_first_wins(cache, origin):
    """RFC 9111 §5.1: with several Age values (one line or several), the first is used."""
    origin.script = [
        (200, (("Cache-Control", "max-age=3600"), ("Age", "7200"), ("Age", "0"), ("ETag", '"a"')), b"")
    ]
    fetch(cache, origin)
    assert cache.lookup("GET", URL).action is Action.REVALIDATE


# -- request directives (RFC 9111 §5.2.1) -----------------------------------------------------


def test_request_max_age(cache, origin, clock):
    """RFC 9111 §5.2.1.1: the client wants a response no older than max-age."""
    origin.script = [ok(Cache_Control="max-age=3600")]
    fetch(cache, origin)
    clock.advance(100)
    assert cache.lookup("GET", URL, {"Cache-Control": "max-age=200"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"Cache-Control": "max-age=50"}).action is Action.MISS


def test_request_max_stale(cache, origin, clock):
    """RFC 9111 §5.2.1.2: max-stale accepts a stale response, up to N seconds (any, without N)."""
    origin.script = [ok(Cache_Control="max-age=10")]
    fetch(cache, origin)
    clock.advance(60)
    ok50 = cache.lookup("GET", URL, {"Cache-Control": "max-stale=100"})
    assert ok50.action is Action.STALE and ok50.response is not None and ok50.response.cache_status == "stale"
    assert cache.lookup("GET", URL, {"Cache-Control": "max-stale"}).action is Action.STALE
    assert cache.lookup("GET", URL, {"Cache-Control": "max-stale=20"}).action is Action.MISS


def test_request_max_stale_never_beats_must_revalidate(cache, origin, clock):
    """RFC 9111 §4.2.4 / §5.2.2.2: must-revalidate forbids serving stale, whatever the client accepts."""
    origin.script = [ok(Cache_Control="max-age=10, must-revalidate", ETag='"a"')]
    fetch(cache, origin)
    clock.advance(60)
    assert cache.lookup("GET", URL, {"Cache-Control": "max-stale"}).action is Action.REVALIDATE


def test_request_min_fresh(cache, origin, clock):
    """RFC 9111 §5.2.1.3: min-fresh wants at least N more seconds of freshness."""
    origin.script = [ok(Cache_Control="max-age=1500")]
    fetch(cache, origin)
    clock.advance(1000)
    assert cache.lookup("GET", URL, {"Cache-Control": "min-fresh=400"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"Cache-Control": "min-fresh=600"}).action is Action.MISS


def test_request_no_cache_validates_with_the_stored_validators(cache, origin):
    """RFC 9111 §5.2.1.4: no-cache: a stored response is not used without successful validation."""
    origin.script = [
        ok(Cache_Control="max-age=3600", ETag='"e"', Last_Modified="Tue, 14 Nov 2023 00:00:00 GMT"),
        ok(b"", 304, ETag='"e"'),
    ]
    fetch(cache, origin)
    r = fetch(cache, origin, headers={"Cache-Control": "no-cache"})
    assert sent_header(r.sent, "If-None-Match") == '"e"'
    assert sent_header(r.sent, "If-Modified-Since") == "Tue, 14 Nov 2023 00:00:00 GMT"
    assert r.cache_status == "revalidated" and r.body == b"v1"


def test_pragma_no_cache_only_without_cache_control(cache, origin):
    """RFC 9111 §5.4 (RFC 7234 §5.4): Pragma: no-cache acts as no-cache only when Cache-Control is absent."""
    origin.script = [ok(Cache_Control="max-age=3600", ETag='"e"')]
    fetch(cache, origin)
    assert cache.lookup("GET", URL, {"Pragma": "no-cache"}).action is Action.REVALIDATE
    assert cache.lookup("GET", URL, {"Pragma": "no-cache", "Cache-Control": "max-stale"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"Pragma": "x-ext"}).action is Action.HIT


def test_only_if_cached(cache, origin, clock):
    """RFC 9111 §5.2.1.7: only-if-cached: a stored fresh response, or a 504 without asking the origin."""
    oic = {"Cache-Control": "only-if-cached"}
    miss = cache.lookup("GET", URL, oic)
    assert miss.action is Action.UNAVAILABLE and miss.response is not None and miss.response.status == 504
    origin.script = [ok(Cache_Control="max-age=10")]
    fetch(cache, origin)
    assert cache.lookup("GET", URL, oic).action is Action.HIT
    clock.advance(11)
    assert cache.lookup("GET", URL, oic).action is Action.UNAVAILABLE


def test_immutable_ignores_a_reload_max_age(cache, origin):
    """RFC 8246 §2: a fresh immutable response is reused even when the request says max-age=0."""
    origin.script = [ok(Cache_Control="max-age=600, immutable", ETag='"a"')]
    fetch(cache, origin)
    assert cache.lookup("GET", URL, {"Cache-Control": "max-age=0"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"Cache-Control": "no-cache"}).action is Action.REVALIDATE


# -- validation (RFC 9111 §4.3) ---------------------------------------------------------------


def test_304_refreshes_headers_and_freshness(cache, origin, clock):
    """RFC 9111 §4.3.4 / §3.2: a 304 updates stored fields (not Content-Length/-Type) and freshness."""
    origin.script = [
        ok(Cache_Control="max-age=10", ETag='"e1"', X_V="1", Content_Length="2", Content_Type="text/plain"),
        ok(
            b"",
            304,
            Cache_Control="max-age=100",
            ETag='"e1"',
            X_V="2",
            Content_Length="0",
            Content_Type="x/y",
        ),
    ]
    fetch(cache, origin)
    clock.advance(11)
    r = fetch(cache, origin)
    assert sent_header(r.sent, "If-None-Match") == '"e1"'
    assert r.status == 200 and r.body == b"v1" and r.cache_status == "revalidated"
    assert r.header("X-V") == "2" and r.header("Cache-Control") == "max-age=100"
    assert r.header("Content-Length") == "2" and r.header("Content-Type") == "text/plain"
    clock.advance(50)
    hit = fetch(cache, origin)
    assert hit.sent is None and hit.header("X-V") == "2" and hit.header("Age") == "50"


def test_last_modified_revalidation(cache, origin, clock):
    """RFC 9111 §4.3.1: with only Last-Modified, If-Modified-Since carries it."""
    lm = "Tue, 14 Nov 2023 00:00:00 GMT"
    origin.script = [ok(Cache_Control="max-age=1", Last_Modified=lm), ok(b"", 304, Last_Modified=lm)]
    fetch(cache, origin)
    clock.advance(2)
    r = fetch(cache, origin)
    assert sent_header(r.sent, "If-Modified-Since") == lm and r.body == b"v1"


def test_304_without_validator_updates_the_one_validated(cache, origin, clock):
    """RFC 9111 §4.3.4: a 304 naming no validator answers the single response the cache validated."""
    origin.script = [ok(Cache_Control="max-age=1", ETag='"e"'), ok(b"", 304, Cache_Control="max-age=60")]
    fetch(cache, origin)
    clock.advance(2)
    assert fetch(cache, origin).cache_status == "revalidated"
    assert fetch(cache, origin).sent is None


def test_304_with_another_strong_etag_updates_nothing(cache, origin, clock):
    """RFC 9111 §4.3.4: a strong validator matching no stored response must not update any."""
    origin.script = [
        ok(Cache_Control="max-age=1", ETag='"e1"'),
        ok(b"", 304, ETag='"other"', Cache_Control="max-age=60"),
    ]
    fetch(cache, origin)
    clock.advance(2)
    r = fetch(cache, origin)
    assert r.body == b"v1" and r.header("ETag") == '"e1"'
    assert cache.lookup("GET", URL).action is Action.REVALIDATE


def test_changed_resource_replaces_the_entry(cache, origin, clock):
    """RFC 9111 §4.3.3: a full response to a conditional request replaces the stored one."""
    origin.script = [
        ok(Cache_Control="max-age=1", ETag='"e1"'),
        ok(b"v2", Cache_Control="max-age=60", ETag='"e2"'),
    ]
    fetch(cache, origin)
    clock.advance(2)
    assert fetch(cache, origin).body == b"v2"
    hit = fetch(cache, origin)
    assert hit.sent is None and hit.body == b"v2" and len(cache) == 1


def test_304_no_store_drops_the_entry(cache, origin, clock):
    """RFC 9111 §3.2 / §5.2.2.5: a 304 carrying no-store serves the response but stops storing it."""
    origin.script = [
        ok(Cache_Control="max-age=1", ETag='"e"'),
        ok(b"", 304, ETag='"e"', Cache_Control="no-store"),
    ]
    fetch(cache, origin)
    clock.advance(2)
    assert fetch(cache, origin).body == b"v1"
    assert len(cache) == 0


def test_callers_conditional_answered_from_a_fresh_response(cache, origin):
    """RFC 9111 §4.3.2: If-None-Match (weak comparison) or If-Modified-Since against a fresh response: 304."""
    lm = "Tue, 14 Nov 2023 00:00:00 GMT"
    origin.script = [ok(Cache_Control="max-age=600", ETag='W/"e"', Last_Modified=lm)]
    fetch(cache, origin)
    inm = fetch(cache, origin, headers={"If-None-Match": '"x", "e"'})
    assert inm.sent is None and inm.status == 304 and inm.body == b"" and inm.header("ETag") == 'W/"e"'
    assert fetch(cache, origin, headers={"If-None-Match": '"x"'}).status == 200
    assert fetch(cache, origin, headers={"If-None-Match": "*"}).status == 304
    assert fetch(cache, origin, headers={"If-Modified-Since": lm}).status == 304
    assert fetch(cache, origin, headers={"If-Modified-Since": "Mon, 13 Nov 2023 00:00:00 GMT"}).status == 200


def test_callers_conditional_on_a_stale_response_goes_as_is(cache, origin, clock):
    """RFC 9111 §4.3.2: stale: the caller's own conditional request goes as is, its 304 comes back."""
    origin.script = [
        ok(Cache_Control="max-age=1", ETag='"e"'),
        ok(b"", 304, ETag='"e"', Cache_Control="max-age=60"),
    ]
    fetch(cache, origin)
    clock.advance(2)
    r = fetch(cache, origin, headers={"If-None-Match": '"e"'})
    assert r.sent == (("If-None-Match", '"e"'),) and r.status == 304
    assert fetch(cache, origin).sent is None  # and the 304 refreshed the stored response


def test_preconditions_are_the_origins(cache, origin):
    """RFC 9110 §13.2.1: If-Match / If-Unmodified-Since are evaluated by the origin, never by the cache."""
    origin.script = [ok(Cache_Control="max-age=600", ETag='"e"'), ok(b"", 412)]
    fetch(cache, origin)
    assert fetch(cache, origin, headers={"If-Match": '"zzz"'}).status == 412


# -- Vary (RFC 9111 §4.1) ---------------------------------------------------------------------


def test_vary_selects_the_variant_and_keeps_several(cache, origin):
    """RFC 9111 §4.1: a stored response is used only when its selecting headers match; variants coexist."""
    origin.script = [
        ok(b"en", Cache_Control="max-age=60", Vary="Accept-Language"),
        ok(b"fr", Cache_Control="max-age=60", Vary="Accept-Language"),
    ]
    fetch(cache, origin, headers={"Accept-Language": "en"})
    fr = fetch(cache, origin, headers={"Accept-Language": "fr"})
    assert fr.body == b"fr" and fr.sent is not None
    assert fetch(cache, origin, headers={"Accept-Language": "en"}).body == b"en"
    assert fetch(cache, origin, headers={"Accept-Language": "fr"}).body == b"fr"
    assert len(origin.seen) == 2


def test_vary_absent_header_matches_only_absent(cache, origin):
    """RFC 9111 §4.1: a header absent in both requests matches; present in one only does not."""
    origin.script = [ok(Cache_Control="max-age=60", Vary="Foo")]
    fetch(cache, origin)
    assert cache.lookup("GET", URL).action is Action.HIT
    assert cache.lookup("GET", URL, {"Foo": "1"}).action is Action.MISS


def test_vary_normalisation(cache, origin):
    """RFC 9111 §4.1: names in any case; lines combined; list whitespace; Accept-Language case, order."""
    origin.script = [ok(Cache_Control="max-age=60", Vary="FOO, accept-language")]
    fetch(cache, origin, headers=(("foo", "1,2"), ("Accept-Language", "en, de")))
    assert (
        cache.lookup("GET", URL, (("Foo", "1"), ("FOO", " 2"), ("accept-language", "DE,en"))).action
        is Action.HIT
    )
    assert cache.lookup("GET", URL, (("Foo", "2, 1"), ("Accept-Language", "en, de"))).action is Action.MISS


@pytest.mark.parametrize("vary", ["*", "Foo, *", ", *"])
def test_vary_star_never_matches(cache, origin, vary):
    """RFC 9111 §4.1: a Vary containing "*" always fails to match, so it is not stored."""
    origin.script = [ok(Cache_Control="max-age=60", Vary=vary)]
    fetch(cache, origin)
    assert len(cache) == 0


def test_vary_mismatch_revalidates_with_the_stored_validator(cache, origin):
    """RFC 9111 §4.1 / §4.3.1: no matching variant: the request offers the stored ETag; a 304 serves it."""
    origin.script = [
        ok(Cache_Control="max-age=60", Vary="Abc", ETag='"e"', Last_Modified="Tue, 14 Nov 2023 00:00:00 GMT"),
        ok(b"", 304, ETag='"e"', Vary="Abc", Cache_Control="max-age=60"),
    ]
    fetch(cache, origin, headers={"Abc": "123"})
    r = fetch(cache, origin, headers={"Abc": "456"})
    assert r.lookup.action is Action.MISS
    assert sent_header(r.sent, "If-None-Match") == '"e"' and sent_header(r.sent, "If-Modified-Since") is None
    assert r.status == 200 and r.body == b"v1" and r.cache_status == "revalidated"
    assert cache.lookup("GET", URL, {"Abc": "456"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"Abc": "123"}).action is Action.HIT


# -- stale responses (RFC 5861, RFC 9111 §4.2.4) ----------------------------------------------


def test_stale_while_revalidate_serves_stale_and_revalidates_once(cache, origin, clock):
    """RFC 5861 §3: within the window the stale response is served and one background revalidation runs."""
    origin.script = [ok(Cache_Control="max-age=1, stale-while-revalidate=60", ETag='"e"')]
    fetch(cache, origin)
    clock.advance(5)
    first = cache.lookup("GET", URL)
    second = cache.lookup("GET", URL)
    assert first.action is Action.STALE and first.background and first.response is not None
    assert first.response.cache_status == "stale" and first.response.body == b"v1"
    assert sent_header(first.request_headers, "If-None-Match") == '"e"'
    assert second.action is Action.STALE and not second.background
    out = cache.on_response(first, 304, (("ETag", '"e"'), ("Cache-Control", "max-age=100")), b"")
    assert out.cache_status == "revalidated"
    assert cache.lookup("GET", URL).action is Action.HIT


def test_stale_while_revalidate_window_ends(cache, origin, clock):
    """RFC 5861 §3: past the window the cache validates before serving."""
    origin.script = [ok(Cache_Control="max-age=1, stale-while-revalidate=4", ETag='"e"')]
    fetch(cache, origin)
    clock.advance(6)
    assert cache.lookup("GET", URL).action is Action.REVALIDATE


def test_failed_background_revalidation_can_be_retried(cache, origin, clock):
    """RFC 5861 §3: a background revalidation that failed (on_error) lets the next lookup start another."""
    origin.script = [ok(Cache_Control="max-age=1, stale-while-revalidate=60", ETag='"e"')]
    fetch(cache, origin)
    clock.advance(5)
    first = cache.lookup("GET", URL)
    cache.on_error(first)
    assert cache.lookup("GET", URL).background


@pytest.mark.parametrize("directive", ["must-revalidate", "no-cache"])
def test_stale_while_revalidate_yields_to_must_revalidate_and_no_cache(cache, origin, clock, directive):
    """RFC 9111 §4.2.4: a cache must not serve stale when must-revalidate or no-cache forbids it."""
    origin.script = [ok(Cache_Control=f"max-age=1, stale-while-revalidate=60, {directive}", ETag='"e"')]
    fetch(cache, origin)
    clock.advance(5)
    assert cache.lookup("GET", URL).action is Action.REVALIDATE


def test_stale_if_error_policy_serves_on_5xx_and_transport_errors(make, origin, clock):
    """RFC 5861 §4: within the allowance a stale response stands in for a 500/502/503/504 or no answer."""
    cache = make(stale_if_error=60)
    origin.script = [ok(Cache_Control="max-age=10"), ok(b"", 503), Gone()]
    fetch(cache, origin)
    clock.advance(20)
    r = fetch(cache, origin)
    assert r.status == 200 and r.body == b"v1" and r.cache_status == "stale"
    assert fetch(cache, origin).body == b"v1"


def test_stale_if_error_has_a_limit(make, origin, clock):
    """RFC 5861 §4: past the allowance the error shows."""
    cache = make(stale_if_error=5)
    origin.script = [ok(Cache_Control="max-age=10"), ok(b"", 500), Gone()]
    fetch(cache, origin)
    clock.advance(20)
    assert fetch(cache, origin).status == 500
    with pytest.raises(Gone):
        fetch(cache, origin)


def test_response_stale_if_error_directive(cache, origin, clock):
    """RFC 5861 §4: the response's own stale-if-error=N allows it, with the policy at 0."""
    origin.script = [ok(Cache_Control="max-age=10, stale-if-error=100"), ok(b"", 502)]
    fetch(cache, origin)
    clock.advance(20)
    assert fetch(cache, origin).body == b"v1"


def test_request_stale_if_error_directive(cache, origin, clock):
    """RFC 5861 §4: a request's stale-if-error=N allows it too."""
    origin.script = [ok(Cache_Control="max-age=10"), Gone()]
    fetch(cache, origin)
    clock.advance(20)
    assert fetch(cache, origin, headers={"Cache-Control": "stale-if-error=60"}).cache_status == "stale"


@pytest.mark.parametrize("directive", ["must-revalidate", "no-cache", "proxy-revalidate"])
def test_stale_if_error_never_serves_what_must_be_revalidated(make, origin, clock, directive):
    """RFC 9111 §4.2.4 / §5.2.2.2 / §5.2.2.4: must-revalidate and no-cache responses are never served stale.

    The old cache served no-cache entries on error; this is the fix.
    """
    cache = make(stale_if_error=600)
    origin.script = [
        ok(Cache_Control=f"max-age=10, stale-if-error=600, {directive}", ETag='"e"'),
        ok(b"", 500),
    ]
    fetch(cache, origin)
    clock.advance(20)
    assert fetch(cache, origin).status == 500


def test_fresh_entry_stands_in_on_error_unless_the_caller_refused_it(cache, origin):
    """RFC 5861 §4: a fresh entry may stand in for a failed forced revalidation only with an allowance."""
    origin.script = [ok(Cache_Control="max-age=600", ETag='"e"'), Gone(), Gone()]
    fetch(cache, origin)
    with pytest.raises(Gone):
        fetch(cache, origin, headers={"Cache-Control": "no-cache"})
    r = fetch(cache, origin, headers={"Cache-Control": "no-cache, stale-if-error=10"})
    assert r.cache_status == "stale" and r.body == b"v1"


def test_no_cache_entry_is_not_served_on_error_even_when_fresh(make, origin):
    """RFC 9111 §5.2.2.4: a no-cache response needs successful validation, which a failure is not."""
    cache = make(stale_if_error=600)
    origin.script = [ok(Cache_Control="max-age=600, no-cache", ETag='"e"'), Gone()]
    fetch(cache, origin)
    with pytest.raises(Gone):
        fetch(cache, origin)


# -- invalidation (RFC 9111 §4.4) -------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"])
def test_unsafe_methods_invalidate_after_a_non_error_response(cache, origin, method):
    """RFC 9111 §4.4: a 2xx/3xx to a method not known to be safe invalidates the target URI."""
    origin.script = [ok(Cache_Control="max-age=600"), ok(b"", 204)]
    fetch(cache, origin)
    r = fetch(cache, origin, method=method)
    assert r.cache_status == "bypass" and len(cache) == 0


def test_error_responses_do_not_invalidate(cache, origin):
    """RFC 9111 §4.4: only a non-error status invalidates; a failed POST leaves the entry."""
    origin.script = [ok(Cache_Control="max-age=600"), ok(b"", 500), ok(b"", 404)]
    fetch(cache, origin)
    fetch(cache, origin, method="POST")
    fetch(cache, origin, method="DELETE")
    assert len(cache) == 1


def test_safe_methods_do_not_invalidate(cache):
    """RFC 9110 §9.2.1: OPTIONS, TRACE and the other safe methods change nothing."""
    for method in ("OPTIONS", "TRACE", "PROPFIND", "SEARCH"):
        assert cache.invalidate(method, URL, 200, ()) == 0


def test_location_and_content_location_on_the_same_origin_are_invalidated(cache, origin):
    """RFC 9111 §4.4: Location and Content-Location targets are invalidated when same-origin."""
    other = "http://elsewhere.test/profiles/demo/p2"
    for url in (URL, "http://api.test/profiles/demo/p2", "http://api.test/profiles/demo/p3", other):
        origin.script.append(ok(Cache_Control="max-age=600"))
        fetch(cache, origin, url=url)
    origin.script = [
        ok(b"", 201, Location="/profiles/demo/p2", Content_Location="p3"),
        ok(b"", 201, Location=other),
    ]
    fetch(cache, origin, method="POST", url="http://api.test/profiles/demo/")
    assert cache.lookup("GET", URL).action is Action.HIT  # not the POST's target, not named
    assert cache.lookup("GET", "http://api.test/profiles/demo/p2").action is Action.MISS
    assert cache.lookup("GET", "http://api.test/profiles/demo/p3").action is Action.MISS
    fetch(cache, origin, method="POST", url="http://api.test/x")
    assert cache.lookup("GET", other).action is Action.HIT


def test_invalidation_covers_every_query_and_credential(cache, origin):
    """RFC 9111 §4.4 (and the old cache's rule): POST /profiles drops /profiles?limit=5 for every tenant."""
    pages = "http://api.test/profiles"
    origin.script = [ok(Cache_Control="max-age=60"), ok(Cache_Control="max-age=60"), ok(b"", 201)]
    fetch(cache, origin, url=pages + "?limit=5", credential="a")
    fetch(cache, origin, url=pages + "?limit=5", credential="b")
    fetch(cache, origin, method="POST", url=pages, credential="a")
    assert len(cache) == 0


def test_unanswered_unsafe_request_invalidates(cache, origin):
    """RFC 9111 §4.4, conservatively: a PUT that got no answer may have changed the resource."""
    origin.script = [ok(Cache_Control="max-age=60"), Gone()]
    fetch(cache, origin)
    with pytest.raises(Gone):
        fetch(cache, origin, method="PUT")
    assert len(cache) == 0


def test_post_response_with_its_own_content_location_answers_gets(cache, origin):
    """RFC 9110 §9.3.3: a POST response, explicitly fresh, whose Content-Location is its target URI."""
    origin.script = [ok(b"created", Cache_Control="max-age=60", Content_Location="/profiles/demo/p1")]
    fetch(cache, origin, method="POST")
    hit = fetch(cache, origin)
    assert hit.sent is None and hit.body == b"created"


# -- ranges (RFC 9111 §3.4, RFC 9110 §14) -----------------------------------------------------


def test_range_served_from_a_stored_complete_response(cache, origin):
    """RFC 9111 §3.4 / RFC 9110 §14.4: one satisfiable range of a stored 200: a 206 with Content-Range."""
    origin.script = [ok(b"0123456789A", Cache_Control="max-age=60", Content_Length="11")]
    fetch(cache, origin)
    r = fetch(cache, origin, headers={"Range": "bytes=-1"})
    assert r.sent is None and r.status == 206 and r.body == b"A"
    assert r.header("Content-Range") == "bytes 10-10/11" and r.header("Content-Length") == "1"
    assert fetch(cache, origin, headers={"Range": "bytes=1-3"}).body == b"123"


def test_unsatisfiable_range_is_416(cache, origin):
    """RFC 9110 §15.5.17: no satisfiable range: 416 with Content-Range: bytes */length."""
    origin.script = [ok(b"0123", Cache_Control="max-age=60")]
    fetch(cache, origin)
    r = fetch(cache, origin, headers={"Range": "bytes=10-"})
    assert r.status == 416 and r.header("Content-Range") == "bytes */4" and r.body == b""


@pytest.mark.parametrize(
    "headers",
    [{"Range": "bytes=0-1,3-4"}, {"Range": "items=0-1"}, {"Range": "bytes=0-1", "If-Range": '"other"'}],
)
def test_other_ranges_get_the_whole_response(cache, origin, headers):
    """RFC 9110 §14.2 / §13.1.5: several ranges, another unit or a failed If-Range: the full 200 (allowed)."""
    origin.script = [ok(b"0123", Cache_Control="max-age=60", ETag='"e"')]
    fetch(cache, origin)
    r = fetch(cache, origin, headers=headers)
    assert r.status == 200 and r.body == b"0123"


def test_range_on_a_stale_response_validates_without_if_modified_since(cache, origin, clock):
    """RFC 9111 §4.3.1: a range request validates with the ETag only; the 304 is answered with the range."""
    origin.script = [
        ok(b"0123", Cache_Control="max-age=1", ETag='"e"', Last_Modified="Tue, 14 Nov 2023 00:00:00 GMT"),
        ok(b"", 304, ETag='"e"'),
    ]
    fetch(cache, origin)
    clock.advance(2)
    r = fetch(cache, origin, headers={"Range": "bytes=2-"})
    assert sent_header(r.sent, "If-Modified-Since") is None and sent_header(r.sent, "Range") == "bytes=2-"
    assert r.status == 206 and r.body == b"23"


# -- HEAD (RFC 9110 §9.3.2, RFC 9111 §4.3.5) --------------------------------------------------


def test_head_answered_from_a_stored_get(cache, origin):
    """RFC 9110 §9.3.2: HEAD is GET without content, so a stored GET response answers it."""
    origin.script = [ok(b"body", Cache_Control="max-age=60", Content_Length="4")]
    fetch(cache, origin)
    r = fetch(cache, origin, method="HEAD")
    assert r.sent is None and r.body == b"" and r.header("Content-Length") == "4"


def test_head_200_updates_the_stored_get(cache, origin, clock):
    """RFC 9111 §4.3.5: a 200 to HEAD with matching validators updates the stored GET response."""
    origin.script = [
        ok(b"body", Cache_Control="max-age=1", ETag='"e"', X_T="1"),
        ok(b"", 200, Cache_Control="max-age=100", ETag='"e"', X_T="2"),
    ]
    fetch(cache, origin)
    clock.advance(2)
    fetch(cache, origin, method="HEAD")
    hit = fetch(cache, origin)
    assert hit.sent is None and hit.header("X-T") == "2" and hit.body == b"body"


def test_head_200_with_another_validator_stales_the_stored_get(cache, origin, clock):
    """RFC 9111 §4.3.5: validators that do not match mean the stored GET response is not current."""
    origin.script = [ok(b"body", Cache_Control="max-age=1", ETag='"e"'), ok(b"", 200, ETag='"f"')]
    fetch(cache, origin)
    clock.advance(2)
    fetch(cache, origin, method="HEAD")
    assert len(cache) == 0


# -- keys, memory and threads -----------------------------------------------------------------


def test_credentials_never_cross(cache, origin):
    """Keys carry the credential digest: one tenant never reads another's entry."""
    origin.script = [
        ok(b"a", Cache_Control="private, max-age=60"),
        ok(b"b", Cache_Control="private, max-age=60"),
    ]
    fetch(cache, origin, credential="tenant-a")
    assert fetch(cache, origin, credential="tenant-b").body == b"b"
    assert fetch(cache, origin, credential="tenant-a").body == b"a"
    assert cache.lookup("GET", URL).action is Action.MISS


def test_query_is_part_of_the_key_and_secrets_are_not(cache, origin):
    """RFC 9111 §2: the URI (with query) is the key; credential-like query values are kept as digests."""
    origin.script = [ok(b"1", Cache_Control="max-age=60"), ok(b"2", Cache_Control="max-age=60")]
    fetch(cache, origin, url=URL + "?a=1&api_key=s3cret")
    assert fetch(cache, origin, url=URL + "?a=2&api_key=s3cret").body == b"2"
    assert fetch(cache, origin, url=URL + "?a=1&api_key=s3cret#frag").sent is None
    assert "s3cret" not in repr(cache._store._by_key)  # noqa: SLF001


def test_lru_bound_evicts_least_recently_used(make, origin):
    """Bounded memory: with max_entries=2, touching A then adding C evicts B."""
    cache = make(max_entries=2)
    for path in ("a", "b", "a", "c"):
        origin.script.append(ok(Cache_Control="max-age=60"))
        fetch(cache, origin, url=f"http://api.test/{path}")
    assert len(cache) == 2
    assert cache.lookup("GET", "http://api.test/a").action is Action.HIT
    assert cache.lookup("GET", "http://api.test/b").action is Action.MISS


def test_byte_bound_evicts(make, origin):
    """Bounded memory: max_total_bytes evicts the oldest entries, whatever their count."""
    cache = make(max_total_bytes=3000)
    for i in range(5):
        origin.script.append(ok(b"x" * 1000, Cache_Control="max-age=60"))
        fetch(cache, origin, url=f"http://api.test/{i}")
    assert cache.stored_bytes <= 3000 and len(cache) == 2
    assert cache.lookup("GET", "http://api.test/4").action is Action.HIT


def test_variants_per_url_are_bounded(cache, origin):
    """Bounded memory: a URL varying on a high-cardinality header keeps its 16 newest variants."""
    for i in range(40):
        origin.script.append(ok(Cache_Control="max-age=60", Vary="X-Id"))
        fetch(cache, origin, headers={"X-Id": str(i)})
    assert len(cache) == 16
    assert cache.lookup("GET", URL, {"X-Id": "39"}).action is Action.HIT
    assert cache.lookup("GET", URL, {"X-Id": "0"}).action is Action.MISS


def test_clear_and_invalidate_url(cache, origin):
    """invalidate_url drops a path (resolved against a base); clear drops everything."""
    origin.script = [ok(Cache_Control="max-age=60"), ok(Cache_Control="max-age=60")]
    fetch(cache, origin)
    fetch(cache, origin, url="http://api.test/other")
    assert cache.invalidate_url("/other", base="http://api.test/x") == 1
    cache.clear()
    assert len(cache) == 0 and cache.stored_bytes == 0


def test_concurrent_use_is_safe(make, clock):
    """One cache shared by threads: no error, the bounds hold."""
    cache = make(max_entries=20)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                url = f"http://api.test/{(n * 7 + i) % 50}"
                lk = cache.lookup("GET", url)
                if lk.response is None:
                    cache.on_response(lk, 200, (("Cache-Control", "max-age=60"), ("ETag", f'"{i}"')), b"x")
                if i % 50 == 0:
                    cache.on_response(cache.lookup("POST", url), 204, (), b"")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) <= 20
