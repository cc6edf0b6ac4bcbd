"""Finding a request's route with one dict look-up instead of a regex per route.

Starlette's router tries each route's regex in turn, and a request for the last route pays for
every one before it (on a profile read, more than its handler cost). The API has one route per
path and its paths never overlap, so a path without parameters is found in a dict, and any other
path needs only the routes with parameters: the route found is the one Starlette's scan finds.
What matches no route (404, a slash redirect) and anything under a ``root_path`` goes through
Starlette's own scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send


class DirectRouter(Router):
    """Starlette's router, with a dict of the routes whose path has no parameters."""

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes=routes, **kwargs)
        self._fixed: dict[str, Route] = {}
        self._patterns: list[BaseRoute] = []
        for route in self.routes:
            if isinstance(route, Route) and not route.param_convertors:
                self._fixed[route.path] = route
            else:
                self._patterns.append(route)
        # The look-up finds what the scan would only if no other route matches a fixed path.
        for path in self._fixed:
            for route in self._patterns:
                if not isinstance(route, Route) or route.path_regex.match(path):
                    raise ValueError(f"route {getattr(route, 'path', route)!r} overlaps {path!r}")

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            fixed = self._fixed.get(scope["path"])
            found, found_scope = None, None
            for route in (fixed,) if fixed is not None else self._patterns:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    found, found_scope = route, child_scope
                    break
                if match is Match.PARTIAL and found is None:  # a 405 unless a later one is FULL
                    found, found_scope = route, child_scope
            if found is not None and found_scope is not None:
                if "router" not in scope:
                    scope["router"] = self
                scope["route"] = found
                scope.update(found_scope)
                await found.handle(scope, receive, send)
                return
        await super().app(scope, receive, send)
