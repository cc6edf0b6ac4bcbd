"""The mutants: realistic bugs, each one exact replacement in one file, with a probe that shows it.

A mutant's ``old`` text must occur exactly once in ``file``: when the code it targets changes,
the mutant stops applying and the run fails loudly, naming it, instead of testing nothing. Keep
each patch small and each description one line, saying what a user of the code would see.
``probe`` names a function of :mod:`mutants._probes` whose output the mutant must change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Mutant:
    """One planted bug."""

    id: str
    description: str
    file: str
    old: str
    new: str
    probe: str


MUTANTS: tuple[Mutant, ...] = (
    # -- client: retries ------------------------------------------------------------------------
    Mutant(
        id="retry-404",
        description="a 404 is retried like a 503",
        file="client/_retry.py",
        old="RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})",
        new="RETRY_STATUSES = frozenset({404, 429, 500, 502, 503, 504})",
        probe="retry",
    ),
    Mutant(
        id="retry-after-clamped",
        description="Retry-After is clamped to the backoff cap",
        file="client/_retry.py",
        old="        if retry_after is not None and retry_after > delay:\n            delay = retry_after\n",
        new="        if retry_after is not None and retry_after > delay:\n"
        "            delay = min(retry_after, self.backoff_cap)\n",
        probe="retry",
    ),
    Mutant(
        id="retry-after-ignored",
        description="Retry-After is never read: the client sleeps its own backoff",
        file="client/_retry.py",
        old="retry_after = error.retry_after if self.respect_retry_after"
        " and isinstance(error, HttpError) else None",
        new="retry_after = None",
        probe="retry",
    ),
    Mutant(
        id="retry-after-http-date-ignored",
        description="a Retry-After given as an HTTP-date is not understood",
        file="client/_retry.py",
        old="    if match is not None:\n        return float(match.group(1))\n",
        new="    if match is not None:\n        return float(match.group(1))\n    return None\n",
        probe="retry",
    ),
    Mutant(
        id="post-retried-after-read-timeout",
        description="a read timeout counts as never sent, so a POST without a key is sent again",
        file="client/_exceptions.py",
        old='requests.exceptions.ReadTimeout: (ReadTimeout, "read timeout", True),',
        new='requests.exceptions.ReadTimeout: (ReadTimeout, "read timeout", False),',
        probe="retry",
    ),
    Mutant(
        id="connect-timeout-not-retried",
        description="a connect timeout counts as maybe sent, so a POST is not retried after one",
        file="client/_exceptions.py",
        old='requests.exceptions.ConnectTimeout: (ConnectTimeout, "connect timeout", False),',
        new='requests.exceptions.ConnectTimeout: (ConnectTimeout, "connect timeout", True),',
        probe="retry",
    ),
    Mutant(
        id="no-jitter",
        description="backoff without jitter: always the top of the window",
        file="client/_retry.py",
        old="    return rng.uniform(0.0, ceiling)",
        new="    return ceiling",
        probe="retry",
    ),
    Mutant(
        id="backoff-uncapped",
        description="the backoff cap is ignored: delays keep doubling",
        file="client/_retry.py",
        old="    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 1000))",
        new="    ceiling = base * 2.0 ** min(attempt - 1, 1000)",
        probe="retry",
    ),
    Mutant(
        id="one-attempt-too-many",
        description="one attempt more than RetryPolicy.attempts",
        file="client/_retry.py",
        old="        if state.attempt >= self.attempts:",
        new="        if state.attempt > self.attempts:",
        probe="retry",
    ),
    Mutant(
        id="budget-one-over",
        description="the retry budget allows one retry more than its allowance",
        file="client/_retry.py",
        old="            if sum(self._retries) + 1 > allowed:",
        new="            if sum(self._retries) > allowed:",
        probe="retry",
    ),
    Mutant(
        id="request-id-per-attempt",
        description="each attempt gets a new X-Request-ID",
        file="client/_engine.py",
        old="            if state.attempt > 1 and auth is not None:\n",
        new="            if state.attempt > 1 and retry is not None and retry.request_id_header:\n"
        "                request.headers[retry.request_id_header] = str(uuid.uuid4())\n"
        "            if state.attempt > 1 and auth is not None:\n",
        probe="retry",
    ),
    Mutant(
        id="idempotency-key-per-attempt",
        description="each attempt of a POST gets a new Idempotency-Key",
        file="client/_engine.py",
        old="            if state.attempt > 1 and auth is not None:\n",
        new="            if state.attempt > 1 and retry is not None"
        " and retry.idempotency_header in request.headers:\n"
        "                request.headers[retry.idempotency_header] = str(uuid.uuid4())\n"
        "            if state.attempt > 1 and auth is not None:\n",
        probe="retry",
    ),
    Mutant(
        id="no-idempotency-key",
        description="a POST never gets the Idempotency-Key its policy opts into, so it is never retried",
        file="client/_engine.py",
        old="if retry.wants_key(method, url) and retry.idempotency_header not in headers:",
        new="if retry.wants_key(method, url) and retry.idempotency_header in headers:",
        probe="retry",
    ),
    # -- client: circuit breaker ----------------------------------------------------------------
    Mutant(
        id="breaker-never-closes",
        description="after its probes succeed the breaker goes half-open again instead of closing",
        file="client/_breaker.py",
        old="                    if self._successes >= self.policy.half_open_permits:\n"
        "                        self._move(BreakerState.CLOSED, now, transitions)",
        new="                    if self._successes >= self.policy.half_open_permits:\n"
        "                        self._move(BreakerState.HALF_OPEN, now, transitions)",
        probe="breaker",
    ),
    Mutant(
        id="breaker-counts-4xx",
        description="the breaker counts 4xx answers as the host's failures",
        file="client/_breaker.py",
        old="    return frozenset({429, *range(500, 600)})",
        new="    return frozenset({429, *range(400, 600)})",
        probe="breaker",
    ),
    Mutant(
        id="breaker-opens-early",
        description="the breaker opens one outcome before min_calls",
        file="client/_breaker.py",
        old="                    self._count >= self.policy.min_calls\n",
        new="                    self._count >= self.policy.min_calls - 1\n",
        probe="breaker",
    ),
    Mutant(
        id="half-open-extra-probe",
        description="a half-open breaker admits one probe more than its permits",
        file="client/_breaker.py",
        old="                if self._in_flight >= self.policy.half_open_permits:",
        new="                if self._in_flight > self.policy.half_open_permits:",
        probe="breaker",
    ),
    Mutant(
        id="failed-probe-keeps-half-open",
        description="a failed probe leaves the breaker half-open instead of reopening it",
        file="client/_breaker.py",
        old="                if failure:\n"
        "                    self._move(BreakerState.OPEN, now, transitions)",
        new="                if failure:\n                    self._successes = 0",
        probe="breaker",
    ),
    Mutant(
        id="release-keeps-permit",
        description="releasing a probe that produced no outcome never gives its permit back",
        file="client/_breaker.py",
        old="            if ticket.generation == self._generation and self._in_flight > 0:\n"
        "                self._in_flight -= 1",
        new="            if ticket.generation == self._generation and self._in_flight > 0:\n"
        "                pass",
        probe="breaker",
    ),
    Mutant(
        id="stale-outcome-counts",
        description="the outcome of a call admitted before the last transition still moves the breaker",
        file="client/_breaker.py",
        old="            if ticket.generation != self._generation:\n                return",
        new="            if ticket.generation != self._generation and not ticket.probe:\n"
        "                return",
        probe="breaker",
    ),
    # -- client: rate limiter -------------------------------------------------------------------
    Mutant(
        id="x-ratelimit-reset-as-seconds",
        description="an epoch X-RateLimit-Reset is read as seconds to wait",
        file="client/_limiter.py",
        old="        return max(0.0, number)\n    return number - now\n",
        new="        return max(0.0, number)\n    return number\n",
        probe="limiter",
    ),
    Mutant(
        id="ietf-reset-ignored",
        description="the IETF RateLimit t= is ignored: a 0-remaining pause lasts pause_on_429",
        file="client/_limiter.py",
        old="pause = float(t.group(1)) if t is not None else None",
        new="pause = None",
        probe="limiter",
    ),
    Mutant(
        id="limiter-429-retry-after-ignored",
        description="the limiter pauses a 429 for pause_on_429, not for its Retry-After",
        file="client/_limiter.py",
        old='after = parse_retry_after(headers.get("Retry-After"), now=policy.wall_clock())',
        new="after = None",
        probe="limiter",
    ),
    Mutant(
        id="bucket-overfills",
        description="the client's bucket refills past its burst while idle",
        file="client/_limiter.py",
        old="            self._tokens = min(\n"
        "                float(self.policy.burst), self._tokens + (now - self._updated) * self.policy.rate\n"
        "            )",
        new="            self._tokens = self._tokens + (now - self._updated) * self.policy.rate",
        probe="limiter",
    ),
    # -- client: cache --------------------------------------------------------------------------
    Mutant(
        id="vary-ignored",
        description="Vary is ignored: one language's cached answer is served to another",
        file="client/_httpcache/_entry.py",
        old="            if vary_value(name, lines.get(name, [])) != value:\n                return False",
        new="            pass",
        probe="cache",
    ),
    Mutant(
        id="age-ignored",
        description="the Age a response arrived with is not counted against its freshness",
        file="client/_httpcache/_entry.py",
        old="    return max(apparent_age, parse_age(headers) + response_delay)",
        new="    return max(apparent_age, response_delay)",
        probe="cache",
    ),
    Mutant(
        id="no-store-stored",
        description="a no-store response is stored (and revalidated later)",
        file="client/_httpcache/_cache.py",
        old='        elif "no-store" in cc:\n            return None\n',
        new="",
        probe="cache",
    ),
    Mutant(
        id="no-cache-served-fresh",
        description="a no-cache response is served from the cache without revalidating",
        file="client/_httpcache/_cache.py",
        old="            if fresh and not entry.no_cache and not req.no_cache and _"
        "fresh_enough(entry, req, age):",
        new="            if fresh and not req.no_cache and _fresh_enough(entry, req, age):",
        probe="cache",
    ),
    Mutant(
        id="cache-shared-across-credentials",
        description="the cache key leaves out the credential: one tenant reads another's entry",
        file="client/_engine.py",
        old="        return credential_digest(identity, authz, api_key)",
        new='        return identity or ""',
        probe="cache",
    ),
    Mutant(
        id="put-delete-keep-cache",
        description="PUT and DELETE count as safe: they do not invalidate the cached GET of their URL",
        file="client/_httpcache/_cache.py",
        old='SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND'
        '", "REPORT", "SEARCH", "QUERY"})',
        new='SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND'
        '", "REPORT", "SEARCH", "QUERY",'
        ' "PUT", "DELETE"})',
        probe="cache",
    ),
    # -- client: the engine (one mutant per property, each in the engine every driver runs) ---
    Mutant(
        id="engine-transport-error-not-an-attempt",
        description="P1: an attempt that ends in a connection error is not counted, so it i"
        "s retried once more",
        file="client/_engine.py",
        old='        seen = getattr(error, "received", None)\n',
        new='        seen = getattr(error, "received", None)\n'
        "        if isinstance(error, TransportError):\n"
        "            state.attempt -= 1\n",
        probe="retry",
    ),
    Mutant(
        id="engine-key-on-every-post",
        description="P2: the engine adds an Idempotency-Key to every POST, opted in or not, so any "
        "POST is retried",
        file="client/_engine.py",
        old="            if retry.wants_key(method, url) and retry.idempotency_header not in headers:",
        new='            if (method == "POST" or retry.wants_key(method, url))'
        " and retry.idempotency_header not in headers:",
        probe="retry",
    ),
    Mutant(
        id="engine-sleep-capped",
        description="P3: the engine cuts every wait between attempts to 1 s, Retry-After included",
        file="client/_engine.py",
        old='                yield Sleep(delay, "backoff")',
        new='                yield Sleep(min(delay, 1.0), "backoff")',
        probe="retry",
    ),
    Mutant(
        id="engine-4xx-trips-breaker",
        description="P4: the engine reports every 4xx to the breaker as a failure of the host",
        file="client/_engine.py",
        old="                breaker.record(ticket, failure=breaker.policy.is_failure(status))",
        new="                breaker.record(ticket, failure=status >= 400)",
        probe="breaker",
    ),
    Mutant(
        id="engine-server-limits-unheard",
        description="P5: the engine hands the limiter the request's headers, not the response's, so "
        "the server's rate-limit word goes unheard",
        file="client/_engine.py",
        old="                bucket.observe(status, reply.headers, done=admitted)",
        new="                bucket.observe(status, request.headers, done=admitted)",
        probe="limiter",
    ),
    Mutant(
        id="engine-unsafe-answers-untold",
        description="P6: the engine tells the cache only about GET and HEAD answers, so a PUT never "
        "invalidates",
        file="client/_engine.py",
        old="        elif self.cache is not None and lk is not None:\n",
        new='        elif self.cache is not None and lk is not None and request.method in ("GET", "HEAD"):\n',
        probe="cache",
    ),
    Mutant(
        id="engine-budget-counts-attempts",
        description="P7: the retry budget counts every attempt as a new call, so retries fe"
        "ed their own allowance",
        file="client/_engine.py",
        old="            if state.attempt > 1 and auth is not None:\n",
        new="            if state.attempt > 1 and self.budget is not None:\n"
        "                self.budget.record_request()\n"
        "            if state.attempt > 1 and auth is not None:\n",
        probe="retry",
    ),
    # -- fake: fault injection ------------------------------------------------------------------
    Mutant(
        id="injected-429-without-retry-after",
        description="an injected 429 whose rule sets no Retry-After carries none",
        file="mock_server/_faults/_inject.py",
        old="    seconds = retry.seconds if retry is not None else (1 if status == 429 else None)",
        new="    seconds = retry.seconds if retry is not None else None",
        probe="fake",
    ),
    Mutant(
        id="injected-429-retry-after-fixed",
        description="an injected 429 always says Retry-After: 1, whatever its rule says",
        file="mock_server/_faults/_inject.py",
        old="    seconds = retry.seconds if retry is not None else (1 if status == 429 else None)",
        new="    seconds = 1 if status == 429 else (retry.seconds if retry is not None else None)",
        probe="fake",
    ),
    Mutant(
        id="sequence-skips-first",
        description="a rule's sequence starts at its second entry",
        file="mock_server/_faults/_engine.py",
        old="fault = rule.sequence[k - 1] if k <= len(rule.sequence) else None",
        new="fault = rule.sequence[k] if k < len(rule.sequence) else None",
        probe="fake",
    ),
    Mutant(
        id="probability-inverted",
        description="a rule with probability p fires with probability 1 - p",
        file="mock_server/_faults/_engine.py",
        old='draws(self.seed, rule.id, session, n, "p")[0] >= rule.probability',
        new='draws(self.seed, rule.id, session, n, "p")[0] < rule.probability',
        probe="fake",
    ),
    Mutant(
        id="truncate-sends-everything",
        description="a truncate fault sends the whole body before closing",
        file="mock_server/_faults/_injectors.py",
        old="cut = min(int(len(body) * (fault.fraction or 0.0)), len(body) - 1)",
        new="cut = len(body)",
        probe="fake",
    ),
    # -- fake: rate limiter ---------------------------------------------------------------------
    Mutant(
        id="bucket-burst-plus-one",
        description="the fake's bucket admits a request on a fraction of a token: burst + 1",
        file="mock_server/_ratelimit.py",
        old="        allowed = bucket.tokens >= 1.0",
        new="        allowed = bucket.tokens > 0.0",
        probe="fake",
    ),
    Mutant(
        id="remaining-rounded-up",
        description="X-RateLimit-Remaining rounds a part-refilled token up",
        file="mock_server/_ratelimit.py",
        old="        remaining = int(tokens)",
        new="        remaining = math.ceil(tokens)",
        probe="fake",
    ),
    Mutant(
        id="reset-not-an-epoch",
        description="X-RateLimit-Reset is sent as seconds to wait, not as an epoch",
        file="mock_server/_ratelimit.py",
        old='(b"x-ratelimit-reset", b"%d" % (math.ceil(self._wall()) + reset)),',
        new='(b"x-ratelimit-reset", b"%d" % reset),',
        probe="fake",
    ),
    Mutant(
        id="limiter-429-bare",
        description="the limiter's 429 loses its Retry-After and rate-limit headers",
        file="mock_server/_api.py",
        old="                    exc.headers.update(verdict.headers)",
        new="                    pass",
        probe="fake",
    ),
    # -- fake: the API --------------------------------------------------------------------------
    Mutant(
        id="page-repeats-last",
        description="the next page starts with the previous page's last profile",
        file="mock_server/_store.py",
        old="start = 0 if after is None else bisect.bisect_right(names, after)",
        new="start = 0 if after is None else bisect.bisect_left(names, after)",
        probe="fake",
    ),
    Mutant(
        id="replay-only-200",
        description="only 200 answers are kept for Idempotency-Key replay (a 201 is not)",
        file="mock_server/_resources/_idempotency.py",
        old="        if 200 <= response.status_code < 300:",
        new="        if response.status_code == 200:",
        probe="fake",
    ),
    Mutant(
        id="unit-maximum-exclusive",
        description="an hrv_vector value of exactly 1 is refused",
        file="mock_server/_inputs.py",
        old="Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]",
        new="Unit = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]",
        probe="fake",
    ),
    Mutant(
        id="short-vector-accepted",
        description="an hrv_vector of 7 numbers is accepted",
        file="mock_server/_inputs.py",
        old="Vector = Annotated[list[Unit], Field(min_length=8, max_length=8)]",
        new="Vector = Annotated[list[Unit], Field(min_length=7, max_length=8)]",
        probe="fake",
    ),
)
