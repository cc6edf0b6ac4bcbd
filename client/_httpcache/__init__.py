"""A sans-IO private HTTP cache (RFC 9111, with RFC 5861's stale extensions).

Pure: bytes, str, header lists and a clock. No ``requests``, no ``httpx``, no sockets. A driver
(the engine) asks the cache what to do, does the I/O itself, and tells the cache what came back.

Types
-----
``Headers`` is a tuple of ``(name, value)`` pairs in wire order (names in any case, repeated
names allowed). Every method that takes headers also accepts a ``Mapping[str, str]`` or any
iterable of pairs (for httpx pass ``headers.multi_items()``, so repeated lines stay apart;
requests' comma-joined values parse the same way).

``StoredResponse`` (frozen): ``status``, ``headers``, ``body`` (bytes), ``request_time`` and
``response_time`` (epoch seconds: when the request that fetched it left, and when the response
arrived; RFC 9111 §4.2.3).

``ServedResponse`` (frozen): what the engine hands its caller instead of an origin response:
``status``, ``headers`` (with a computed ``Age``), ``body`` (``b""`` for HEAD), and
``cache_status``, one of ``"hit"``, ``"stale"``, ``"revalidated"``, ``"unavailable"``, and a
``reason`` property (the status's standard phrase). Its
status is not always the stored one: a caller's own ``If-None-Match`` / ``If-Modified-Since``
matching a fresh response gets a 304 (§4.3.2); a ``Range`` on a stored 200 gets a 206 or a
416 (§3.4); ``only-if-cached`` with nothing usable gets a 504 (§5.2.1.7).

``Action`` (enum): ``HIT`` (fresh), ``STALE`` (served stale: within ``stale-while-revalidate``,
or within the caller's ``max-stale``), ``REVALIDATE`` (a conditional request is needed), ``MISS``
(nothing usable; the request may still carry the ETag of another stored variant),
``UNAVAILABLE`` (``only-if-cached`` and nothing usable: a 504 to serve), ``BYPASS`` (not a
cacheable request: any method but GET and HEAD, one the policy leaves out, or a request with
``no-store``; send it as it is and still call ``on_response``, which invalidates, §4.4).
HEAD is answered from a stored GET response (RFC 9110 §9.3.2).

``Lookup`` (frozen): ``action``; ``response`` (a ``ServedResponse`` to return to the caller
*now*, or ``None`` when the engine must send a request); ``request_headers`` (the headers to
send: the caller's, plus ``If-None-Match`` / ``If-Modified-Since`` when the cache validates);
``background`` (``True`` when ``response`` is stale and the engine should send
``request_headers`` in the background and feed the result to :meth:`HttpCache.on_response`:
set on one lookup per stale entry at a time). The rest is private state that
:meth:`on_response` and :meth:`on_error` read back.

``Outcome`` (frozen): ``response`` (a ``ServedResponse`` to return instead of the origin's
response, or ``None``: return the origin's response unchanged), ``cache_status`` (``"miss"``,
``"revalidated"``, ``"stale"``, ``"bypass"``), ``stored`` (whether the response was stored).

``CachePolicy`` (frozen, keyword-only): the public fields of the old ``client.CachePolicy``
(``max_entries``, ``max_entry_bytes``, ``stale_if_error``, ``methods``, ``clock``,
``wall_clock``) plus ``max_total_bytes`` and ``heuristic_fraction`` / ``heuristic_max``. A bad
value raises ``CachePolicyError`` (a ``ConfigError`` naming the field). Only ``wall_clock`` is
read: every age is epoch seconds, comparable with ``Date``.

The engine's loop
-----------------
::

    cache = HttpCache(policy)                       # clock: policy.wall_clock (epoch seconds)
    lk = cache.lookup(method, url, headers, credential=credential_digest(api_key))
    if lk.response is not None:                     # HIT, STALE, UNAVAILABLE
        if lk.background:                           # stale-while-revalidate (RFC 5861 §3)
            spawn(revalidate(lk))                   # send, then cache.on_response(lk, ...)
        return lk.response
    t0 = clock()
    try:
        status, resp_headers, body = send(method, url, lk.request_headers)
    except TransportError:
        stale = cache.on_error(lk)                  # stale-if-error (RFC 5861 §4)
        if stale is not None:
            return stale
        raise
    out = cache.on_response(lk, status, resp_headers, body, request_time=t0, response_time=clock())
    return out.response if out.response is not None else origin_response

``on_response`` stores (§3), folds a 304 into the stored response it validates (§4.3.4) and
serves that, serves a stale entry for a 500/502/503/504 when stale-if-error allows, and
invalidates after a non-error response to an unsafe method (§4.4). A 304 answering the
caller's *own* conditional request is the caller's: ``Outcome.response`` is ``None`` (stored
responses it validates are still refreshed). ``body=None`` means "not buffered" (a stream):
nothing is stored, everything else still happens. Retries belong inside ``send``: call
``on_response`` once, with the final response. ``on_error`` is for no response at all; for
an unsafe method it invalidates the URL (the request may have landed) and returns ``None``.

``on_response`` also takes ``request_headers=`` (what was finally sent), which it does not need.
Other methods: ``on_error(lookup, now=None)``, ``invalidate(method, url, status, headers)``,
``invalidate_url(url, base=None)``, ``clear()``, ``len(cache)``. Helpers:
``credential_digest(*parts)``, ``secret_free_url(url)``, ``parse_cache_control(value)``.

Keys are (credential digest, URL without fragment); a URL holds several ``Vary`` variants.
Thread-safe: every method is short and non-blocking, so one cache serves threads and tasks.
"""

from __future__ import annotations

from ._cache import HttpCache
from ._headers import credential_digest, parse_cache_control, secret_free_url
from ._model import (
    Action,
    CacheStatus,
    HeaderInput,
    Headers,
    Lookup,
    Outcome,
    ServedResponse,
    StoredResponse,
)
from ._policy import CachePolicy, CachePolicyError

__all__ = [
    "Action",
    "CachePolicy",
    "CachePolicyError",
    "CacheStatus",
    "HeaderInput",
    "Headers",
    "HttpCache",
    "Lookup",
    "Outcome",
    "ServedResponse",
    "StoredResponse",
    "credential_digest",
    "parse_cache_control",
    "secret_free_url",
]
