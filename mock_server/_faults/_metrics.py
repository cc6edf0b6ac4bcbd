"""Prometheus text exposition of what the fake saw and injected.

Series: requests by route, method and status (or outcome, for requests that got no status),
faults by rule and type, and the injected delay beside the actual duration of delayed
requests (histograms), so the fidelity of the latency faults can be read off a scrape.

Every label takes a bounded set of values, so no client can grow the scrape (or the memory
behind it) without end: methods outside RFC 9110's are ``other``, and so are paths past the
first 200 the API did not route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._journal import Entry

_DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_OVERSHOOT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_MAX_ROUTES = 200
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"))


class _Histogram:
    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return

    def flat(self, name: str, out: dict[str, float]) -> None:
        if not self.count:
            return
        for i, n in enumerate(self.counts):
            if n:
                out[f"h{_SEP}{name}{_SEP}{i}"] = n
        out[f"h{_SEP}{name}{_SEP}sum"] = self.total
        out[f"h{_SEP}{name}{_SEP}count"] = self.count

    def lines(self, name: str) -> Iterable[str]:
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            cumulative += n
            yield f'{name}_bucket{{le="{bound:g}"}} {cumulative}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {self.total:.6f}"
        yield f"{name}_count {self.count}"


_SEP = "\x1f"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and histograms updated as requests complete."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.faults: dict[tuple[str, str], int] = {}
        self.injected = _Histogram(_DELAY_BUCKETS)
        self.delayed_duration = _Histogram(_DELAY_BUCKETS)
        self.overshoot = _Histogram(_OVERSHOOT_BUCKETS)
        self._routes: set[str] = set()

    def route_label(self, route: str | None, path: str) -> str:
        """The route template when the API routed the request, else the path (bounded)."""
        if route is not None:
            return route
        if path in self._routes or len(self._routes) < _MAX_ROUTES:
            self._routes.add(path)
            return path
        return "other"

    def observe(self, entry: Entry, route: str) -> None:
        status = (
            str(entry.status)
            if entry.outcome == "response" and entry.status
            else (entry.outcome or "unknown")
        )
        method = entry.method if entry.method in _METHODS else "other"
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if entry.rules:
            fault_type = entry.fault or "latency"
            for rule in entry.rules:
                fkey = (rule, fault_type if rule == entry.rule else "latency")
                self.faults[fkey] = self.faults.get(fkey, 0) + 1
        if entry.injected_delay_s > 0 and entry.duration_s is not None:
            self.injected.observe(entry.injected_delay_s)
            self.delayed_duration.observe(entry.duration_s)
            self.overshoot.observe(max(0.0, entry.duration_s - entry.injected_delay_s))

    # -- summing over processes (a shared backend) ----------------------------------------------

    def _histograms(self) -> dict[str, _Histogram]:
        return {"injected": self.injected, "delayed": self.delayed_duration, "overshoot": self.overshoot}

    def drain(self) -> dict[str, float]:
        """Every count as flat fields (for a hash summed over processes), zeroing them here."""
        out: dict[str, float] = {}
        for (route, method, status), n in self.requests.items():
            # A path the API did not route is the client's: it may hold the separator.
            key = f"r{_SEP}{route.replace(_SEP, ' ')}{_SEP}{method}{_SEP}{status}"
            out[key] = out.get(key, 0) + n
        for (rule, ftype), n in self.faults.items():
            key = f"f{_SEP}{rule.replace(_SEP, ' ')}{_SEP}{ftype}"
            out[key] = out.get(key, 0) + n
        for name, histogram in self._histograms().items():
            histogram.flat(name, out)
        self.requests = {}
        self.faults = {}
        self.injected = _Histogram(_DELAY_BUCKETS)
        self.delayed_duration = _Histogram(_DELAY_BUCKETS)
        self.overshoot = _Histogram(_OVERSHOOT_BUCKETS)
        return out

    def add(self, flat: Mapping[str, float]) -> None:
        """Add counts given as :meth:`drain` gives them; fields of another shape are skipped."""
        histograms = self._histograms()
        for field, value in flat.items():
            parts = field.split(_SEP)
            if parts[0] == "r" and len(parts) == 4:
                rkey = (parts[1], parts[2], parts[3])
                self.requests[rkey] = self.requests.get(rkey, 0) + int(value)
            elif parts[0] == "f" and len(parts) == 3:
                fkey = (parts[1], parts[2])
                self.faults[fkey] = self.faults.get(fkey, 0) + int(value)
            elif parts[0] == "h" and len(parts) == 3 and parts[1] in histograms:
                histogram = histograms[parts[1]]
                if parts[2] == "sum":
                    histogram.total += value
                elif parts[2] == "count":
                    histogram.count += int(value)
                elif parts[2].isdigit() and int(parts[2]) < len(histogram.counts):
                    histogram.counts[int(parts[2])] += int(value)

    def render(self, *, rules: int, journal: int, held: int, in_flight: int) -> str:
        out = [
            "# HELP mock_requests_total Requests to the API by route, method and status (or outcome).",
            "# TYPE mock_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(
                f'mock_requests_total{{route="{_label(route)}",method="{method}",status="{status}"}} {n}'
            )
        out += [
            "# HELP mock_faults_total Faults injected, by rule and fault type.",
            "# TYPE mock_faults_total counter",
        ]
        for (rule, ftype), n in sorted(self.faults.items()):
            out.append(f'mock_faults_total{{rule="{_label(rule)}",type="{ftype}"}} {n}')
        out += [
            "# HELP mock_injected_delay_seconds Latency injected into delayed requests.",
            "# TYPE mock_injected_delay_seconds histogram",
            *self.injected.lines("mock_injected_delay_seconds"),
            "# HELP mock_delayed_request_duration_seconds Actual duration of requests with injected latency.",
            "# TYPE mock_delayed_request_duration_seconds histogram",
            *self.delayed_duration.lines("mock_delayed_request_duration_seconds"),
            "# HELP mock_delay_overshoot_seconds Actual duration minus injected latency, delayed requests.",
            "# TYPE mock_delay_overshoot_seconds histogram",
            *self.overshoot.lines("mock_delay_overshoot_seconds"),
            "# HELP mock_fault_rules Fault rules loaded.",
            "# TYPE mock_fault_rules gauge",
            f"mock_fault_rules {rules}",
            "# HELP mock_journal_entries Requests held in the journal.",
            "# TYPE mock_journal_entries gauge",
            f"mock_journal_entries {journal}",
            "# HELP mock_held_requests Requests currently held by a delay or a timeout fault.",
            "# TYPE mock_held_requests gauge",
            f"mock_held_requests {held}",
            "# HELP mock_requests_in_flight API requests being served.",
            "# TYPE mock_requests_in_flight gauge",
            f"mock_requests_in_flight {in_flight}",
        ]
        return "\n".join(out) + "\n"
