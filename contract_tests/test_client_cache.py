"""Property 6: the private cache. It never serves one credential's entry to another, never
stores ``no-store``, never serves a stale entry without going back to the origin (unless
stale-if-error is on and the origin fails), counts an ``Age`` the response arrived with against
its freshness, serves an entry only to requests that match its ``Vary`` headers, and unsafe
methods always reach the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import CachePolicy, FakeClock, Policies, RetryPolicy, Timeouts
from mock_server import ServerThread

from ._drivers import DRIVERS, caller
from ._support import fake_clock

each_driver = pytest.mark.parametrize("driver", DRIVERS)

URL = "http://upstream.invalid/profiles/demo/p"
CREDENTIALS = [{"X-API-Key": "demo-key"}, {"X-API-Key": "acme-key"}, {"Authorization": "Bearer demo-key"}]
DIRECTIVES = st.sampled_from(
    [
        "max-age=10",
        "private, max-age=30",
        "max-age=0",
        "no-store",
        "no-cache",
        "no-cache, max-age=60",
        "max-age=5, must-revalidate",
        "max-age=60",
    ]
)
#: The reply's extra headers: none, an ``Age`` it has already spent in a cache upstream, a
#: ``Vary`` on the request's language, or both.
EXTRAS = st.sampled_from(
    [{}, {"Age": "3"}, {"Age": "40"}, {"Vary": "Accept-Language"}, {"Vary": "Accept-Language", "Age": "4"}]
)
LANGUAGES = [None, "en", "fr"]
REPLY = st.tuples(DIRECTIVES, EXTRAS)
ACTIONS = st.one_of(
    st.tuples(st.just("get"), st.tuples(st.integers(0, 2), st.integers(0, 2)), REPLY),
    st.tuples(st.sampled_from(["put", "delete", "post"]), st.tuples(st.integers(0, 2), st.just(0)), REPLY),
    st.tuples(st.just("wait"), st.sampled_from([0.4, 3.3, 7.7, 31.1]), st.just(("", {}))),
)


@dataclass
class Stored:
    at: float
    max_age: float
    no_cache: bool
    age: float = 0.0
    #: The request's Accept-Language when the reply said ``Vary: Accept-Language`` (else unset).
    vary: tuple[str | None] | None = None


def _lifetime(directive: str, extra: dict[str, str]) -> Stored | None:
    parts = {p.strip().split("=")[0]: p.strip() for p in directive.split(",")}
    if "no-store" in parts:
        return None
    max_age = float(parts["max-age"].split("=")[1]) if "max-age" in parts else 0.0
    return Stored(0.0, max_age, "no-cache" in parts, age=float(extra.get("Age", 0)))


@each_driver
@given(actions=st.lists(ACTIONS, min_size=1, max_size=25))
@settings(max_examples=400)  # in-process and cheap: sequences that matter are rare among short ones
def test_cache_never_serves_what_it_must_not(
    driver: str,
    actions: list[tuple[str, Any, tuple[str, dict[str, str]]]],
) -> None:
    """Against a model of what may be reused, every request that must reach the origin does:
    no entry, no-cache, past max-age less the Age it arrived with, or another Vary value.

    The model keeps every variant a credential may have stored (RFC 9111 section 4.1: a URL
    holds one response per Vary selection) and takes the most recent one the request selects;
    a no-store answer is never stored, but need not evict the variants stored before it."""
    clock = fake_clock()
    pending: list[tuple[str, dict[str, str]]] = [("max-age=10", {})]

    def reply(_: FakeClock) -> tuple[int, dict[str, str]]:
        directive, extra = pending[0]
        return 200, {"Cache-Control": directive, "ETag": '"e1"', **extra}

    policies = Policies(
        retry=RetryPolicy(attempts=1, budget=None),
        breaker=None,
        limiter=None,
        cache=CachePolicy(),
        timeouts=Timeouts(read=5, total=None),
    )
    adapter = session = caller(driver, policies, clock, script=[reply])
    model: dict[int, list[Stored]] = {}
    for kind, arg, (directive, extra) in actions:
        if kind == "wait":
            clock.advance(arg)
            continue
        pending[0] = (directive, extra)
        before = len(adapter.sent)
        who, language = arg
        headers = dict(CREDENTIALS[who])
        if LANGUAGES[language] is not None:
            headers["Accept-Language"] = str(LANGUAGES[language])
        if kind == "get":
            variants = model.get(who, [])
            selected = [v for v in variants if v.vary is None or v.vary == (LANGUAGES[language],)]
            stored = selected[-1] if selected else None
            must_reach = (
                stored is None or stored.no_cache or clock.clock() - stored.at >= stored.max_age - stored.age
            )
            response = session.get(URL, headers=headers)
            reached = len(adapter.sent) > before
            if must_reach:
                assert reached, f"served from cache without going to the origin: {stored}"
            if not variants and reached:
                # Validators may come from another variant of the URL (RFC 9111 section 4.3.1),
                # never from nothing: with none stored, none may be sent.
                sent = adapter.sent[-1].headers
                assert "If-None-Match" not in sent, "revalidated an entry it must not have stored"
            if reached:
                fresh = _lifetime(directive, extra)
                if fresh is not None:
                    fresh.at = clock.clock()
                    if "Vary" in extra:
                        fresh.vary = (LANGUAGES[language],)
                    model.setdefault(who, []).append(fresh)
            assert response.status_code == 200
        else:
            session.request(kind.upper(), URL, headers=headers, json={})
            assert len(adapter.sent) == before + 1, f"{kind.upper()} did not reach the origin"
            model.clear()


@each_driver
@given(order=st.lists(st.integers(0, 1), min_size=2, max_size=12))
def test_credentials_never_share_entries(driver: str, order: list[int]) -> None:
    """A response cached for one credential is never the answer to another's request."""
    clock = fake_clock()
    policies = Policies(retry=None, breaker=None, cache=CachePolicy(), timeouts=Timeouts(read=5, total=None))
    script = [lambda c: (200, {"Cache-Control": "private, max-age=60"})]
    adapter = session = caller(driver, policies, clock, script=script)
    for who in order:
        response = session.get(URL, headers=CREDENTIALS[who])
        sent_by = adapter.sent[response.json()["n"] - 1].headers
        assert {k: sent_by[k] for k in CREDENTIALS[who]} == CREDENTIALS[who]


@pytest.mark.socket
@each_driver
def test_tenants_never_see_each_other_through_the_cache(driver: str, fake: ServerThread) -> None:
    """On the wire: one session, two tenants' keys, each reading its own profile list; every
    answer belongs to the credential that asked, and a write reaches the server every time."""
    clock = fake_clock()
    policies = Policies(
        retry=RetryPolicy(attempts=1, budget=None),
        breaker=None,
        cache=CachePolicy(),
        timeouts=Timeouts(read=5, total=None),
    )
    sid = f"cache-iso-{driver}"
    session = recorder = caller(driver, policies, clock, base_headers={"X-Mock-Session": sid})
    for key, tenant in (("demo-key", "demo"), ("acme-key", "acme")):
        body = {"tenant": tenant, "profile_name": "shared-name", "hrv_vector": [0.1] * 8}
        session.post(f"{fake.url}/profiles", json=body, headers={"X-API-Key": key})
    for _ in range(3):
        for key, tenant in (("demo-key", "demo"), ("acme-key", "acme")):
            items = session.get(f"{fake.url}/profiles", headers={"X-API-Key": key}).json()["items"]
            assert {i["tenant"] for i in items} == {tenant}
    gets = [s for s in recorder.sent if s.method == "GET"]
    assert len(gets) == 2, "each tenant's list should be fetched once, then served fresh from cache"
    before = fake.admin.count(session=sid, method="PUT")
    for _ in range(3):
        session.put(
            f"{fake.url}/profiles/demo/shared-name",
            json={"hrv_vector": [0.2] * 8},
            headers={"X-API-Key": "demo-key"},
        )
    assert fake.admin.count(session=sid, method="PUT") == before + 3
