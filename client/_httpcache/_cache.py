"""HttpCache: lookup, store, revalidation and invalidation, driven by an engine without I/O."""

from __future__ import annotations

import threading
from urllib.parse import urljoin, urlsplit

from .._clock import Clock
from ._entry import HEURISTIC_STATUSES, Entry, Key, explicit_freshness, storable_headers, vary_names
from ._headers import (
    DELTA_MAX,
    field_lines,
    first,
    hop_by_hop_names,
    is_strong,
    parse_cache_control,
    parse_etags,
    parse_http_date,
    secret_free_url,
    vary_value,
    weak_match,
)
from ._model import (
    Action,
    CacheStatus,
    HeaderInput,
    Headers,
    Lookup,
    Outcome,
    ServedResponse,
    StoredResponse,
    as_headers,
)
from ._policy import CachePolicy
from ._range import if_range_allows, select_range
from ._request import RequestView
from ._store import Store

__all__ = ["HttpCache"]

# Methods known to be safe (RFC 9110 §9.2.1 and the IANA method registry); every other method,
# including ones never heard of, invalidates (RFC 9111 §4.4).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "REPORT", "SEARCH", "QUERY"})
# RFC 5861 §4: the errors a stale-if-error response may stand in for (beside no answer at all).
STALE_IF_ERROR_STATUSES = frozenset({500, 502, 503, 504})
# Status codes whose caching requirements this cache implements, for must-understand (§5.2.2.3).
UNDERSTOOD_STATUSES = frozenset(
    {200, 201, 202, 203, 204, 300, 301, 302, 303, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426}
    | set(range(500, 506))
)
# RFC 9111 §3.2: a 304 or HEAD response never updates these (besides hop-by-hop fields): the
# length, and the fields the stored (possibly decoded) content depends on.
NOT_UPDATED = frozenset({"content-length", "content-encoding", "content-type", "content-range", "age"})
# A 304 built from a fresh stored response (RFC 9110 §15.4.5) carries these.
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)
# The fields of an unsafe method's answer that name other targets to invalidate (§4.4).
_TARGET_FIELDS = frozenset({"location", "content-location"})
# Outcomes are immutable: the most common one is made once.
_BYPASSED = Outcome(response=None, cache_status="bypass")
# How long a background revalidation may stay unreported before another lookup starts one.
BACKGROUND_GRACE = 30.0


class HttpCache:
    """The running state of a :class:`CachePolicy` (see the package docstring for the loop)."""

    def __init__(self, policy: CachePolicy | None = None, *, clock: Clock | None = None) -> None:
        self.policy = policy if policy is not None else CachePolicy()
        self._clock = clock if clock is not None else self.policy.wall_clock
        self._store = Store(max_entries=self.policy.max_entries, max_total_bytes=self.policy.max_total_bytes)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._store)

    @property
    def stored_bytes(self) -> int:
        """An estimate of the memory the stored responses hold (bodies and header fields)."""
        return self._store.bytes

    # -- lookup ------------------------------------------------------------------------------

    def lookup(
        self,
        method: str,
        url: str,
        request_headers: HeaderInput | None = None,
        *,
        credential: str = "",
        now: float | None = None,
    ) -> Lookup:
        """What to do with a request: serve ``lookup.response`` or send ``lookup.request_headers``."""
        if now is None:
            now = self._clock()
        method = method.upper()
        headers = as_headers(request_headers)
        key, _ = _key(url, credential)
        if method not in self.policy.methods or method not in ("GET", "HEAD"):
            # Not for this cache (a POST, say): its answer is still told, for invalidation.
            return Lookup(
                action=Action.BYPASS,
                response=None,
                request_headers=headers,
                method=method,
                url=url,
                caller_headers=headers,
                key=key,
                now=now,
            )
        if not self._store.variants(key):
            for name, _value in headers:
                if len(name) == 13 and name.lower() == "cache-control":
                    break
            else:
                # Nothing stored for the URL, and no request directive (no-store,
                # only-if-cached) to obey: a miss sending the request as it is, whatever else it
                # carries (its own conditionals go as they are; there is no validator to add).
                # The most common answer, made without the helper below.
                return Lookup(
                    action=Action.MISS,
                    response=None,
                    request_headers=headers,
                    method=method,
                    url=url,
                    caller_headers=headers,
                    key=key,
                    now=now,
                )

        def answer(
            action: Action,
            response: ServedResponse | None,
            send: Headers,
            *,
            entry: Entry | None = None,
            background: bool = False,
            validators_from: tuple[Entry, ...] = (),
        ) -> Lookup:
            return Lookup(
                action=action,
                response=response,
                request_headers=send,
                background=background,
                method=method,
                url=url,
                caller_headers=headers,
                key=key,
                entry=entry,
                validators_from=validators_from,
                now=now,
            )

        req = RequestView(headers)
        if req.no_store:
            # The old cache's rule, kept: a caller asking for no-store neither reads nor writes.
            return answer(Action.BYPASS, None, headers)
        with self._lock:
            variants = list(self._store.variants(key))
            entry = next((e for e in reversed(variants) if e.matches(req.lines)), None)
            if entry is not None:
                self._store.touch(entry)
        if entry is not None and not req.precondition:
            age = entry.age(now)
            fresh = entry.lifetime > age
            staleness = age - entry.lifetime
            if fresh and not entry.no_cache and not req.no_cache and _fresh_enough(entry, req, age):
                served = self._serve(entry, method, req, age, "hit", answer_conditional=True)
                return answer(Action.HIT, served, headers, entry=entry)
            may_serve_stale = not entry.no_cache and not entry.must_revalidate and not req.no_cache
            if (
                not fresh
                and may_serve_stale
                and req.max_stale is not None
                and staleness <= req.max_stale
                and (req.max_age is None or age <= req.max_age)
                and (req.min_fresh is None)
            ):
                # RFC 9111 §5.2.1.2: the caller accepts this much staleness.
                served = self._serve(entry, method, req, age, "stale", answer_conditional=True)
                return answer(Action.STALE, served, headers, entry=entry)
            if (
                not fresh
                and may_serve_stale
                and not req.only_if_cached
                and req.max_age is None
                and req.min_fresh is None
                and not req.conditional
                and not req.precondition
                and staleness <= entry.stale_while_revalidate
            ):
                # RFC 5861 §3: serve stale now, revalidate in the background (one at a time).
                with self._lock:
                    since = entry.background_since
                    background = since is None or now - since > BACKGROUND_GRACE
                    if background:
                        entry.background_since = now
                return answer(
                    Action.STALE,
                    self._serve(entry, method, req, age, "stale", answer_conditional=False),
                    _with_validators(headers, [entry], req, selected=True),
                    entry=entry,
                    background=background,
                    validators_from=(entry,),
                )
        if req.only_if_cached:
            # RFC 9111 §5.2.1.7: nothing usable and the origin may not be asked.
            unavailable = ServedResponse(
                status=504, headers=(("Content-Length", "0"),), body=b"", cache_status="unavailable"
            )
            return answer(Action.UNAVAILABLE, unavailable, headers, entry=entry)
        if req.conditional or req.precondition:
            # The caller's own conditional request goes as it is; its 304 is the caller's.
            return answer(Action.MISS if entry is None else Action.REVALIDATE, None, headers, entry=entry)
        # RFC 9111 §4.3.1: validate the selected response. With none selected (a Vary mismatch)
        # offer the entity tag of the newest stored response for the URL (§4.1): a 304 then can
        # only mean that one, even from a server that leaves the ETag out of its 304. Never its
        # Last-Modified: another variant unmodified since that date says nothing of this one.
        if entry is not None:
            sources = [entry] if entry.etag or entry.last_modified else []
        else:
            sources = [e for e in variants if e.etag][-1:]
        if not sources:
            return answer(Action.MISS, None, headers, entry=entry)
        return answer(
            Action.REVALIDATE if entry is not None else Action.MISS,
            None,
            _with_validators(headers, sources, req, selected=entry is not None),
            entry=entry,
            validators_from=tuple(sources),
        )

    # -- responses ---------------------------------------------------------------------------

    def on_response(
        self,
        lookup: Lookup,
        status: int,
        headers: HeaderInput,
        body: bytes | None,
        *,
        request_time: float | None = None,
        response_time: float | None = None,
        request_headers: HeaderInput | None = None,
    ) -> Outcome:
        """Digest the origin's final response to ``lookup``'s request (see the package docstring).

        ``request_headers`` (what was finally sent) is accepted and not needed: Vary values are
        taken from the headers the lookup saw, so that later lookups compare like with like.
        """
        if response_time is None:
            response_time = self._clock()
        if request_time is None:
            request_time = min(lookup.now, response_time)
        method = lookup.method
        entry: Entry | None = lookup.entry
        self._end_background(lookup)
        if method not in SAFE_METHODS:
            if 200 <= status < 400:
                names = getattr(headers, "lower_names", None)
                if names is not None and names().isdisjoint(_TARGET_FIELDS):
                    # The common answer to a POST names no other target (one set operation
                    # instead of a pass over its fields).
                    self._invalidate(lookup.url, (None, None))
                else:
                    hdrs = as_headers(headers)
                    targets = _locations(hdrs)
                    self._invalidate(lookup.url, targets)
                    if method == "POST" and targets[1] is not None:
                        self._store_post(lookup, status, hdrs, body, request_time, response_time, targets[1])
            return _BYPASSED
        if lookup.action is Action.BYPASS:
            return _BYPASSED
        hdrs = as_headers(headers)
        req = RequestView(lookup.caller_headers)
        if (
            status in STALE_IF_ERROR_STATUSES
            and entry is not None
            and not (req.conditional or req.precondition)
        ):
            stale = self._stale_on_error(entry, method, req, response_time)
            if stale is not None:
                return Outcome(response=stale, cache_status="stale")
        if status == 304:
            return self._not_modified(lookup, req, hdrs, request_time, response_time)
        if method == "HEAD":
            if status == 200:
                self._update_from_head(lookup, req, hdrs, request_time, response_time)
            return Outcome(response=None, cache_status="miss")
        stored = self._store_response(lookup, req, status, hdrs, body, request_time, response_time)
        return Outcome(response=None, cache_status="miss", stored=stored)

    def on_error(self, lookup: Lookup, now: float | None = None) -> ServedResponse | None:
        """A stale stored response to stand in for a failed origin (RFC 5861 §4), or ``None``.

        Call it when no response came (connection error, timeout, retries exhausted). An
        unsafe request that got no answer may still have changed the resource, so its URL is
        invalidated; nothing stands in for it.
        """
        if now is None:
            now = self._clock()
        self._end_background(lookup)
        if lookup.method not in SAFE_METHODS:
            self.invalidate_url(lookup.url)
            return None
        entry: Entry | None = lookup.entry
        if entry is None or lookup.action is Action.BYPASS:
            return None
        req = RequestView(lookup.caller_headers)
        if req.conditional or req.precondition:
            return None  # the caller asked the origin a question only the origin can answer
        return self._stale_on_error(entry, lookup.method, req, now)

    # -- invalidation ------------------------------------------------------------------------

    def invalidate(self, method: str, url: str, status: int, headers: HeaderInput) -> int:
        """Invalidate after an unsafe method's non-error response (§4.4); return entries dropped.

        The target URI goes (every query of its path, every credential), and so do the
        ``Location`` and ``Content-Location`` targets on the same origin.
        """
        if method.upper() in SAFE_METHODS or not 200 <= status < 400:
            return 0
        return self._invalidate(url, _locations(as_headers(headers)))

    def _invalidate(self, url: str, targets: tuple[str | None, str | None]) -> int:
        """Drop ``url``'s entries, and those of the ``Location`` and ``Content-Location`` it
        answered with (``targets``), when they are of its origin (§4.4)."""
        dropped = self.invalidate_url(url)
        for target in targets:
            if target:
                absolute = urljoin(url, target.strip())
                if _origin(absolute) == _origin(url):
                    dropped += self.invalidate_url(absolute)
        return dropped

    def invalidate_url(self, url: str, *, base: str | None = None) -> int:
        """Drop every entry for ``url``'s path (any query, credential); return how many."""
        if base is not None:
            url = urljoin(base, url)
        if not len(self._store):
            # Nothing stored: nothing to drop (as if this ran before any concurrent store).
            return 0
        with self._lock:
            return self._store.remove_path(_path(url))

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._store.clear()

    # -- internals ---------------------------------------------------------------------------

    def _end_background(self, lookup: Lookup) -> None:
        if lookup.background and lookup.entry is not None:
            with self._lock:
                lookup.entry.background_since = None

    def _serve(
        self,
        entry: Entry,
        method: str,
        req: RequestView,
        age: float,
        cache_status: CacheStatus,
        *,
        answer_conditional: bool,
    ) -> ServedResponse:
        """The stored response as the caller gets it: with Age, a range of it, or a 304."""
        stored = entry.stored
        headers = entry.base_headers + (("Age", str(min(int(age), DELTA_MAX))),)
        status, body = stored.status, stored.body
        if answer_conditional and req.conditional and _not_modified_for(entry, req):
            # RFC 9111 §4.3.2: the caller's own validators match the fresh stored response.
            kept = tuple((k, v) for k, v in headers if k.lower() in NOT_MODIFIED_FIELDS or k == "Age")
            return ServedResponse(status=304, headers=kept, body=b"", cache_status=cache_status)
        range_value = req.get("range")
        if (
            range_value is not None
            and method == "GET"
            and status == 200
            and if_range_allows(req.get("if-range"), entry.etag, entry.last_modified)
        ):
            kind, a, b = select_range(range_value, len(body))
            rest = tuple((k, v) for k, v in headers if k.lower() not in ("content-length", "content-range"))
            if kind == "partial":
                # RFC 9111 §3.4 / RFC 9110 §14.4: one satisfiable range of a complete response.
                part = body[a : b + 1]
                headers = rest + (
                    ("Content-Range", f"bytes {a}-{b}/{len(body)}"),
                    ("Content-Length", str(len(part))),
                )
                status, body = 206, part
            elif kind == "unsatisfiable":
                headers = rest + (("Content-Range", f"bytes */{len(body)}"), ("Content-Length", "0"))
                status, body = 416, b""
        if method == "HEAD":
            body = b""
        return ServedResponse(status=status, headers=headers, body=body, cache_status=cache_status)

    def _stale_on_error(
        self, entry: Entry, method: str, req: RequestView, now: float
    ) -> ServedResponse | None:
        """The entry if it may stand in for a failed origin (RFC 5861 §4, RFC 9111 §4.2.4)."""
        if entry.no_cache:
            return None  # every use needs a successful validation, failure included
        age = entry.age(now)
        staleness = age - entry.lifetime
        if staleness > 0 and entry.must_revalidate:
            return None
        allowed = max(self.policy.stale_if_error, entry.stale_if_error, float(req.stale_if_error or 0))
        if req.max_stale is not None:
            allowed = max(allowed, float(req.max_stale))
        if staleness > allowed:
            return None
        if allowed == 0 and (req.no_cache or req.max_age is not None or req.min_fresh is not None):
            # A fresh response the caller refused without validation is no fallback unless a
            # stale-if-error allowance says so.
            return None
        return self._serve(entry, method, req, age, "stale", answer_conditional=False)

    def _not_modified(
        self, lookup: Lookup, req: RequestView, hdrs: Headers, request_time: float, response_time: float
    ) -> Outcome:
        """A 304: update the stored responses it selects (§4.3.4) and serve the refreshed one."""
        with self._lock:
            candidates = list(self._store.variants(lookup.key))
        for e in lookup.validators_from:
            if e not in candidates:
                candidates.append(e)  # evicted while the request was out: still good to serve
        selected = _select_for_update(candidates, hdrs, lookup.validators_from)
        updated = {id(old): self._refresh(old, hdrs, request_time, response_time) for old in selected}
        if req.conditional or req.precondition:
            return Outcome(response=None, cache_status="revalidated" if updated else "miss")
        entry: Entry | None = lookup.entry
        target: Entry | None = None
        if entry is not None and id(entry) in updated:
            target = updated[id(entry)]
        elif updated:
            target = list(updated.values())[-1]
        elif entry is not None and entry in lookup.validators_from:
            # The origin says what we offered is current, though its 304 names no stored
            # validator: serve the entry we validated, without updating it (§4.3.4 forbids).
            target = entry
        elif len(lookup.validators_from) == 1:
            target = lookup.validators_from[0]
        if target is None:
            return Outcome(response=None, cache_status="miss")
        if not target.matches(req.lines):
            # Validated through another variant's entity tag (§4.1): it is also this request's.
            target = self._add_variant(target, req)
        return Outcome(
            response=self._serve(
                target, lookup.method, req, target.age(response_time), "revalidated", answer_conditional=False
            ),
            cache_status="revalidated",
        )

    def _refresh(self, old: Entry, hdrs: Headers, request_time: float, response_time: float) -> Entry:
        """``old`` with a 304's (or HEAD's) header fields folded in (RFC 9111 §3.2)."""
        skip = hop_by_hop_names(hdrs) | NOT_UPDATED
        new_fields = [(k, v) for k, v in hdrs if k.lower() not in skip]
        replaced = {k.lower() for k, _ in new_fields}
        # The stored Age described the old response; the new one's Age (if any) replaces it.
        kept = [(k, v) for k, v in old.stored.headers if k.lower() not in replaced and k.lower() != "age"]
        merged = tuple(kept + new_fields + [(k, v) for k, v in hdrs if k.lower() == "age"])
        cc = parse_cache_control(field_lines(merged, "cache-control"))
        stored = StoredResponse(
            status=old.stored.status,
            headers=storable_headers(merged, cc),
            body=old.stored.body,
            request_time=request_time,
            response_time=response_time,
        )
        new = Entry(key=old.key, path=old.path, stored=stored, vary=old.vary, policy=self.policy)
        with self._lock:
            if "no-store" in cc and "must-understand" not in cc:
                self._store.remove(old)
            elif old in self._store:
                self._store.replace(old, new)
        return new

    def _add_variant(self, source: Entry, req: RequestView) -> Entry:
        names = [n for n, _ in source.vary]
        vary = tuple((n, vary_value(n, req.lines.get(n, []))) for n in names)
        entry = Entry(key=source.key, path=source.path, stored=source.stored, vary=vary, policy=self.policy)
        with self._lock:
            if source in self._store:
                superseded = [e for e in self._store.variants(source.key) if e.matches(req.lines)]
                self._store.add(entry, replacing=superseded)
        return entry

    def _update_from_head(
        self, lookup: Lookup, req: RequestView, hdrs: Headers, request_time: float, response_time: float
    ) -> None:
        """RFC 9111 §4.3.5: a 200 to HEAD updates the stored GET responses it matches, or stales them."""
        with self._lock:
            chosen = [e for e in self._store.variants(lookup.key) if e.matches(req.lines)]
        etag, modified, length = (
            first(hdrs, "etag"),
            first(hdrs, "last-modified"),
            first(hdrs, "content-length"),
        )
        for e in chosen:
            stored_length = first(e.stored.headers, "content-length") or str(len(e.stored.body))
            if (
                (etag is None or (e.etag is not None and e.etag == etag))
                and (modified is None or e.last_modified == modified)
                and (length is None or length.strip() == stored_length.strip())
            ):
                self._refresh(e, hdrs, request_time, response_time)
            else:
                with self._lock:
                    self._store.remove(e)

    def _store_response(
        self,
        lookup: Lookup,
        req: RequestView,
        status: int,
        hdrs: Headers,
        body: bytes | None,
        request_time: float,
        response_time: float,
    ) -> bool:
        """Store a GET response if RFC 9111 §3 allows; drop what it supersedes either way."""
        entry = self._entry_for(lookup.key, lookup.url, req, status, hdrs, body, request_time, response_time)
        with self._lock:
            superseded = [e for e in self._store.variants(lookup.key) if e.matches(req.lines)]
            if entry is not None:
                self._store.add(entry, replacing=superseded)
                return True
            if status < 500 and status != 206:
                # A new representation came (not an error): what the cache held for this
                # request is outdated, even if the new one may not be stored.
                for e in superseded:
                    self._store.remove(e)
        return False

    def _store_post(
        self,
        lookup: Lookup,
        status: int,
        hdrs: Headers,
        body: bytes | None,
        request_time: float,
        response_time: float,
        location: str,
    ) -> None:
        """RFC 9110 §9.3.3: a POST response with explicit freshness and a Content-Location equal
        to the target URI (``location``, its first line) may answer later GETs of that URI."""
        if "GET" not in self.policy.methods or not 200 <= status < 300:
            return
        if _key(urljoin(lookup.url, location.strip()), "")[0][1] != lookup.key[1]:
            return
        cc = parse_cache_control(field_lines(hdrs, "cache-control"))
        if not explicit_freshness(hdrs, cc):
            return
        req = RequestView(lookup.caller_headers)
        entry = self._entry_for(lookup.key, lookup.url, req, status, hdrs, body, request_time, response_time)
        if entry is not None:
            with self._lock:
                self._store.add(
                    entry, replacing=[e for e in self._store.variants(lookup.key) if e.matches(req.lines)]
                )

    def _entry_for(
        self,
        key: Key,
        url: str,
        req: RequestView,
        status: int,
        hdrs: Headers,
        body: bytes | None,
        request_time: float,
        response_time: float,
    ) -> Entry | None:
        """An entry for a response, or ``None`` when RFC 9111 §3 (or the policy) says no."""
        if body is None or len(body) > self.policy.max_entry_bytes or status < 200 or status in (206, 304):
            return None
        cc = parse_cache_control(field_lines(hdrs, "cache-control"))
        if "must-understand" in cc:
            # §5.2.2.3: a status whose requirements the cache knows overrides no-store.
            if status not in UNDERSTOOD_STATUSES:
                return None
        elif "no-store" in cc:
            return None
        if not (
            explicit_freshness(hdrs, cc) or "public" in cc or "private" in cc or status in HEURISTIC_STATUSES
        ):
            return None
        names = vary_names(hdrs)
        if names is None:
            return None  # Vary: * never matches (§4.1)
        vary = tuple((n, vary_value(n, req.lines.get(n, []))) for n in names)
        stored = StoredResponse(
            status=status,
            headers=storable_headers(hdrs, cc),
            body=body,
            request_time=request_time,
            response_time=response_time,
        )
        entry = Entry(key=key, path=_path(url), stored=stored, vary=vary, policy=self.policy)
        if entry.lifetime <= 0 and entry.etag is None and entry.last_modified is None:
            return None  # never fresh and never revalidatable: nothing to gain
        if entry.no_cache and entry.etag is None and entry.last_modified is None:
            return None
        return entry


def _key(url: str, credential: str) -> tuple[Key, str]:
    bare = url.split("#", 1)[0]
    return (credential, secret_free_url(bare)), bare


def _path(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _fresh_enough(entry: Entry, req: RequestView, age: float) -> bool:
    """Whether the request's max-age and min-fresh accept a fresh response (§5.2.1.1, §5.2.1.3).

    An ``immutable`` response (RFC 8246) ignores the request's ``max-age``: that is how a
    reload asks, and the response promised not to change while fresh.
    """
    if req.max_age is not None and age > req.max_age and not entry.immutable:
        return False
    return req.min_fresh is None or entry.lifetime - age >= req.min_fresh


def _not_modified_for(entry: Entry, req: RequestView) -> bool:
    """Whether the caller's If-None-Match / If-Modified-Since match the stored response (§4.3.2)."""
    inm = req.lines.get("if-none-match")
    if inm is not None:
        tags = parse_etags(", ".join(inm)) or []
        if tags == ["*"]:
            return True
        return entry.etag is not None and any(weak_match(t, entry.etag) for t in tags)
    ims = parse_http_date(req.get("if-modified-since"))
    if ims is None:
        return False
    basis = (
        parse_http_date(entry.last_modified)
        or parse_http_date(first(entry.stored.headers, "date"))
        or entry.stored.response_time
    )
    return basis <= ims


def _with_validators(headers: Headers, sources: list[Entry], req: RequestView, *, selected: bool) -> Headers:
    """The request with If-None-Match / If-Modified-Since from ``sources`` (RFC 9111 §4.3.1)."""
    tags: list[str] = []
    for e in sources:
        if e.etag and e.etag not in tags:
            tags.append(e.etag)
    extra: list[tuple[str, str]] = []
    if tags:
        extra.append(("If-None-Match", ", ".join(tags)))
    # Last-Modified only for the selected response, and not for a range request.
    if selected and sources[0].last_modified and "range" not in req.lines:
        extra.append(("If-Modified-Since", sources[0].last_modified))
    return headers + tuple(extra)


def _select_for_update(candidates: list[Entry], hdrs: Headers, validated: tuple[Entry, ...]) -> list[Entry]:
    """The stored responses a 304 updates (RFC 9111 §4.3.4)."""
    etag = first(hdrs, "etag")
    if etag is not None:
        if is_strong(etag):
            return [
                e
                for e in candidates
                if e.etag is not None and is_strong(e.etag) and e.etag.strip() == etag.strip()
            ]
        weak = [e for e in candidates if e.etag is not None and weak_match(e.etag, etag)]
        return weak[-1:]
    modified = first(hdrs, "last-modified")
    if modified is not None:
        same = [
            e
            for e in candidates
            if e.last_modified is not None and e.last_modified.strip() == modified.strip()
        ]
        return same[-1:]
    # No validator in the 304: it can only mean the single response the cache validated.
    return list(validated) if len(validated) == 1 else []


def _locations(hdrs: Headers) -> tuple[str | None, str | None]:
    """The first ``Location`` and ``Content-Location`` lines of an unsafe method's answer, in one
    pass over its fields (what ``first`` finds for each, without a scan per field)."""
    location = content_location = None
    for name, value in hdrs:
        if len(name) in (8, 16):  # the two names' lengths: most fields are neither
            lower = name.lower()
            if lower == "location":
                if location is None:
                    location = value
            elif lower == "content-location" and content_location is None:
                content_location = value
    return location, content_location
