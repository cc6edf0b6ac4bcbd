"""The private HTTP cache (RFC 9111 subset), through a session on a scripted adapter."""

from __future__ import annotations

import pytest

from client import CachedResponse, CachePolicy, Policies, RetriesExhausted, ServerError
from client._httpcache import HttpCache, parse_cache_control, secret_free_url

from .fakes import error, ok

URL = "http://api.test/profiles/demo/p1"


def policies(**cache):
    return Policies(cache=CachePolicy(**cache), breaker=None)


def test_fresh_hit_never_touches_the_network(make_session):
    """Within max-age the second GET is served from the cache, flagged as a hit."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=30"))
    first = s.get(URL)
    second = s.get(URL)
    assert a.count == 1
    assert isinstance(second, CachedResponse) and second.cache_status == "hit"
    assert second.json() == first.json() == {"v": 1}
    assert s.metrics.snapshot().cache_hits == 1


def test_fresh_hit_skips_request_preparation(make_session, monkeypatch):
    """The hot path answers before requests prepares anything."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=30"))
    s.get(URL)
    calls = []
    monkeypatch.setattr(s, "prepare_request", lambda *a, **k: calls.append(1))
    s.get(URL)
    assert calls == [] and a.count == 1


def test_hit_is_a_copy_the_caller_may_mutate(make_session):
    """Changing a returned response's headers does not change the stored entry."""
    s, _ = make_session(ok({"v": 1}, Cache_Control="max-age=30", X_Thing="a"))
    s.get(URL)
    hit = s.get(URL)
    hit.headers["X-Thing"] = "changed"
    assert s.get(URL).headers["X-Thing"] == "a"


def test_expired_entry_goes_back_to_the_network(make_session, clock):
    """After max-age the response is fetched again."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=30"))
    s.get(URL)
    clock.advance(31)
    s.get(URL)
    assert a.count == 2


def test_age_header_shortens_freshness(make_session, clock):
    """A response already 25 s old with max-age=30 is fresh for 5 s more only."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=30", Age="25"))
    s.get(URL)
    clock.advance(4)
    s.get(URL)
    clock.advance(2)
    s.get(URL)
    assert a.count == 2


def test_no_store_is_never_stored(make_session):
    """Cache-Control: no-store keeps the response out of the cache."""
    s, a = make_session(ok({"v": 1}, Cache_Control="no-store, max-age=60"))
    s.get(URL)
    s.get(URL)
    assert a.count == 2


def test_no_cache_revalidates_every_time(make_session):
    """no-cache: stored, but every use sends a conditional request."""
    s, a = make_session(ok({"v": 1}, Cache_Control="no-cache", ETag='"e1"'), ok(None, 304, ETag='"e1"'))
    s.get(URL)
    r = s.get(URL)
    assert a.count == 2 and a.sent[1].headers["If-None-Match"] == '"e1"'
    assert r.status_code == 200 and r.json() == {"v": 1} and r.cache_status == "revalidated"


def test_304_refreshes_headers_and_freshness(make_session, clock):
    """A 304 updates the stored headers and restarts freshness from its own max-age."""
    s, a = make_session(
        ok({"v": 1}, Cache_Control="max-age=10", ETag='"e1"', X_Version="1"),
        ok(None, 304, Cache_Control="max-age=100", ETag='"e1"', X_Version="2"),
    )
    s.get(URL)
    clock.advance(11)
    refreshed = s.get(URL)
    assert refreshed.headers["X-Version"] == "2" and refreshed.json() == {"v": 1}
    clock.advance(50)
    assert s.get(URL).cache_status == "hit"
    assert a.count == 2
    assert s.metrics.snapshot().cache_revalidations == 1


def test_last_modified_revalidation(make_session, clock):
    """Without an ETag, If-Modified-Since carries the stored Last-Modified."""
    lm = "Tue, 14 Nov 2023 22:00:00 GMT"
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=1", Last_Modified=lm), ok(None, 304))
    s.get(URL)
    clock.advance(2)
    assert s.get(URL).json() == {"v": 1}
    assert a.sent[1].headers["If-Modified-Since"] == lm
    assert "If-None-Match" not in a.sent[1].headers


def test_changed_resource_replaces_entry(make_session, clock):
    """A 200 to a conditional request replaces the stored response."""
    s, a = make_session(
        ok({"v": 1}, Cache_Control="max-age=1", ETag='"e1"'),
        ok({"v": 2}, Cache_Control="max-age=60", ETag='"e2"'),
    )
    s.get(URL)
    clock.advance(2)
    assert s.get(URL).json() == {"v": 2}
    assert s.get(URL).json() == {"v": 2}
    assert a.count == 2


def test_vary_selects_the_variant(make_session):
    """Vary: Accept-Language: a request with another language misses."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60", Vary="Accept-Language"))
    s.get(URL, headers={"Accept-Language": "en"})
    s.get(URL, headers={"Accept-Language": "en"})
    s.get(URL, headers={"Accept-Language": "fr"})
    assert a.count == 2


def test_vary_star_is_not_stored(make_session):
    """Vary: * can never match, so it is not stored."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60", Vary="*"))
    s.get(URL)
    s.get(URL)
    assert a.count == 2


def test_credentials_scope_entries(make_session):
    """One API key never reads another's entry."""
    s, a = make_session(ok({"v": 1}, Cache_Control="private, max-age=60"))
    s.get(URL, headers={"X-API-Key": "demo-key"})
    s.get(URL, headers={"X-API-Key": "acme-key"})
    s.get(URL, headers={"X-API-Key": "demo-key"})
    assert a.count == 2


def test_auth_object_scopes_entries(make_session):
    """Sessions with different auth objects (per call) do not share entries."""
    from client import ApiKeyAuth

    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60"))
    s.get(URL, auth=ApiKeyAuth("demo-key"))
    s.get(URL, auth=ApiKeyAuth("acme-key"))
    s.get(URL, auth=ApiKeyAuth("demo-key"))
    assert a.count == 2


def test_keys_never_hold_the_secret(make_session):
    """Neither header nor query credentials appear in plain text in any cache key."""
    s, _ = make_session(ok({"v": 1}, Cache_Control="max-age=60"))
    s.get(URL, headers={"X-API-Key": "demo-key"})
    s.get(URL + "?api_key=query-secret")
    s.get(URL, params={"api_key": "param-secret"})
    store = s.pipeline.cache._store
    keys = repr(list(store._by_key)) + repr(list(store._by_path))
    for secret in ("demo-key", "query-secret", "param-secret"):
        assert secret not in keys


def test_unsafe_method_invalidates_the_url_and_location(make_session):
    """PUT invalidates its URL; a 201's Location is invalidated too."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60"))
    s.get(URL)
    s.get("http://api.test/profiles/demo/p2")
    a.script = [
        ok({"v": 2}),
        ok({}, 201, Location="/profiles/demo/p2"),
        ok({"v": 3}, Cache_Control="max-age=60"),
    ]
    s.put(URL, json={"hrv_vector": []})
    s.post("http://api.test/profiles", json={})
    n = a.count
    s.get(URL)
    s.get("http://api.test/profiles/demo/p2")
    assert a.count == n + 2


def test_unsafe_method_invalidates_every_query_of_the_path(make_session):
    """A POST to /profiles drops cached /profiles?limit=... pages too."""
    s, a = make_session(ok({"items": []}, Cache_Control="max-age=60"))
    s.get("http://api.test/profiles", params={"limit": 5})
    s.post("http://api.test/profiles", json={})
    s.get("http://api.test/profiles", params={"limit": 5})
    assert a.count == 3


def test_stale_if_error_serves_the_stale_entry(make_session, clock):
    """When the origin fails, a stale entry within stale_if_error stands in."""
    s, a = make_session(
        ok({"v": 1}, Cache_Control="max-age=10"), error(500), policies=policies(stale_if_error=60)
    )
    s.get(URL)
    clock.advance(20)
    r = s.get(URL)
    assert r.json() == {"v": 1} and r.cache_status == "stale"
    assert s.metrics.snapshot().cache_stale_served == 1


def test_stale_if_error_has_a_limit(make_session, clock):
    """Past stale_if_error the failure shows."""
    s, _ = make_session(
        ok({"v": 1}, Cache_Control="max-age=10"), error(500), policies=policies(stale_if_error=5)
    )
    s.get(URL)
    clock.advance(20)
    with pytest.raises(RetriesExhausted):
        s.get(URL)


def test_response_stale_if_error_directive_is_honoured(make_session, clock):
    """The response's own stale-if-error=N allows serving it stale on error."""
    s, _ = make_session(ok({"v": 1}, Cache_Control="max-age=10, stale-if-error=100"), error(503))
    s.get(URL)
    clock.advance(20)
    assert s.get(URL).json() == {"v": 1}


def test_must_revalidate_forbids_stale_on_error(make_session, clock):
    """must-revalidate: a stale entry is never served, even when the origin fails."""
    s, _ = make_session(
        ok({"v": 1}, Cache_Control="max-age=10, must-revalidate"),
        error(500),
        policies=policies(stale_if_error=60),
    )
    s.get(URL)
    clock.advance(20)
    with pytest.raises(RetriesExhausted):
        s.get(URL)


def test_request_no_cache_forces_revalidation(make_session):
    """A request's Cache-Control: no-cache skips the fresh hit."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60", ETag='"e"'), ok(None, 304))
    s.get(URL)
    s.get(URL, headers={"Cache-Control": "no-cache"})
    assert a.count == 2


def test_lru_bound_evicts_least_recently_used(make_session):
    """With max_entries=2, touching A then adding C evicts B."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60"), policies=policies(max_entries=2))
    for path in ("a", "b", "a", "c"):
        s.get(f"http://api.test/{path}")
    assert len(s.pipeline.cache) == 2
    n = a.count
    s.get("http://api.test/a")
    s.get("http://api.test/b")
    assert a.count == n + 1


def test_post_is_never_served_from_get_entries_and_head_may_be(make_session):
    """A POST always reaches the origin; a HEAD may be answered from a stored GET (RFC 9110
    section 9.3.2: a response to GET can satisfy HEAD), without a body."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60"))
    s.get(URL)
    head = s.head(URL)
    assert a.count == 1 and head.status_code == 200 and head.content == b""
    s.post(URL, json={})
    assert a.count == 2


def test_error_statuses_are_cached_only_with_explicit_freshness(make_session):
    """A 500 without explicit freshness is not stored; one with max-age is (RFC 9111 section 3:
    any final status may be stored when explicit freshness allows it)."""
    s, a = make_session(error(500), ok({"v": 1}), policies=Policies(retry=None))
    s.get(URL)
    s.get(URL)
    assert a.count == 2
    s, a = make_session(error(500, Cache_Control="max-age=60"), ok({"v": 1}), policies=Policies(retry=None))
    s.get(URL)
    assert s.get(URL).status_code == 500 and a.count == 1


def test_no_explicit_freshness_without_validators_is_not_stored(make_session):
    """Nothing to judge freshness by and nothing to revalidate with: not stored."""
    s, a = make_session(ok({"v": 1}))
    s.get(URL)
    s.get(URL)
    assert a.count == 2


def test_expires_header_gives_freshness(make_session, clock):
    """Expires minus Date is the lifetime when max-age is absent."""
    s, a = make_session(
        ok({"v": 1}, Date="Tue, 14 Nov 2023 22:13:20 GMT", Expires="Tue, 14 Nov 2023 22:13:50 GMT")
    )
    s.get(URL)
    clock.advance(29)
    s.get(URL)
    clock.advance(2)
    s.get(URL)
    assert a.count == 2


def test_cache_control_parser():
    """Directives are lower-cased, quoted values unquoted."""
    assert parse_cache_control('Private, MAX-AGE=30, no-cache="Set-Cookie"') == {
        "private": None,
        "max-age": "30",
        "no-cache": "Set-Cookie",
    }


def test_secret_free_url_hashes_credential_params():
    """api_key values become digests; other params stay."""
    url = secret_free_url("http://h/x?api_key=abc&limit=5")
    assert "abc" not in url and "limit=5" in url


def test_store_refuses_oversized_bodies():
    """Bodies over max_entry_bytes are not kept."""
    cache = HttpCache(CachePolicy(max_entry_bytes=4))
    lookup = cache.lookup("GET", "http://h/u", {})
    outcome = cache.on_response(lookup, 200, {"Cache-Control": "max-age=60"}, b"0123456789")
    assert not outcome.stored and len(cache) == 0


def test_server_error_on_revalidation_without_stale_allowance_raises_or_returns(make_session, clock):
    """Without stale-if-error a failing revalidation surfaces the failure."""
    from client import RetryPolicy

    s, _ = make_session(
        ok({"v": 1}, Cache_Control="max-age=1", ETag='"e"'),
        error(503),
        policies=Policies(retry=RetryPolicy(attempts=2, budget=None)),
    )
    s.get(URL)
    clock.advance(5)
    with pytest.raises(RetriesExhausted) as info:
        s.get(URL)
    assert isinstance(info.value.last, ServerError)
