"""``/analytics/usage`` (counters of authenticated requests, kept by the state backend) and
``/analytics/performance`` (latencies of this process's recent requests)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response

from .._inputs import bad_query, query_choice
from .._openapi import DATE_RANGE_PATTERN
from .._state import ApiState
from .._traffic import TIMEFRAMES, day_of
from ._common import Call, json_response

DATE_RANGE = re.compile(DATE_RANGE_PATTERN)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        # Only February 29 of a common year gets here (the pattern admits no other non-date).
        return date.fromisoformat(text[:8] + "28")


class Analytics:
    def __init__(self, state: ApiState, *, wall: Callable[[], float]) -> None:
        self.state = state
        self.wall = wall

    async def usage(self, request: Request, call: Call) -> Response:
        first, last = self._date_range(request.query_params.get("date_range", "7d"))
        tenant = call.caller.tenant.name
        rows = await self.state.usage(tenant, first.isoformat(), last.isoformat(), call.ticket)
        by_endpoint: dict[str, int] = {}
        by_status: dict[str, int] = {}
        by_day: dict[str, int] = {}
        for day, endpoint, status, count in rows:
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + count
            by_status[str(status)] = by_status.get(str(status), 0) + count
            by_day[day] = by_day.get(day, 0) + count
        return json_response(
            {
                "tenant": tenant,
                "date_range": {"start": first.isoformat(), "end": last.isoformat()},
                "total": sum(by_day.values()),
                "by_endpoint": dict(sorted(by_endpoint.items())),
                "by_status": dict(sorted(by_status.items())),
                "by_day": [{"date": d, "requests": n} for d, n in sorted(by_day.items())],
            }
        )

    def _date_range(self, raw: str) -> tuple[date, date]:
        today = date.fromisoformat(day_of(self.wall()))
        if raw == "today":
            return today, today
        if raw in ("7d", "30d"):
            return today - timedelta(days=int(raw[:-1]) - 1), today
        start, sep, end = raw.partition("..")
        if not sep or not DATE_RANGE.fullmatch(raw):
            raise bad_query("date_range", "must be today, 7d, 30d or YYYY-MM-DD..YYYY-MM-DD")
        # A reversed range is empty rather than an error: it selects no day.
        return _day(start), _day(end)

    async def performance(self, request: Request, call: Call) -> Response:
        query = request.query_params
        metric = query_choice(query, "metric_type", "all", ("latency", "errors", "throughput", "all"))
        timeframe = query_choice(query, "timeframe", "5m", tuple(TIMEFRAMES))
        report = self.state.performance(call.caller.tenant.name, timeframe)
        report["metric_type"] = metric
        return json_response(report)
