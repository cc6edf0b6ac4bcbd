"""The admin API's own OpenAPI document (``GET /__admin/openapi.json``), written by hand.

OpenAPI 3.0.3, which the packaged Swagger UI (4.x) renders. ``tests/ui/test_admin_openapi.py``
checks that it names exactly the routes the admin app serves.
"""

from __future__ import annotations

from typing import Any

_JSON = "application/json"
_FILTERS = (
    ("method", "HTTP method, exact."),
    ("path", "A glob over the path, e.g. /profiles/*."),
    ("status", "An exact status (429) or a class (5xx)."),
    ("outcome", "response, truncated, reset, closed, timeout, client_gone, cancelled or error."),
    ("session", "The X-Mock-Session value."),
    ("tenant", "The tenant the request's credentials name."),
    ("fault", "A fault type or a rule id; `none` selects requests no rule touched."),
    ("rule", "A rule id among those that applied."),
    ("request_id", "The request id, exact."),
    ("since", "Epoch seconds or ISO-8601: requests that arrived then or later."),
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_RULE_ID = {"name": "rule_id", "in": "path", "required": True, "schema": {"type": "string"}}
_FILTER_PARAMS = [_query(name, text) for name, text in _FILTERS]
_LIMIT = _query("limit", "At most this many, the newest.", {"type": "integer", "minimum": 1})
_SESSION = _query("session", "One X-Mock-Session only.")
_BAD = _json(_ref("Error"), "Invalid input; `details` names the field.")
_NOT_FOUND = _json(_ref("Error"), "No such rule.")
_RULE_BODY = {
    "required": True,
    "content": {_JSON: {"schema": _ref("Rule")}},
}


def _paths() -> dict[str, Any]:
    rules = _json(_ref("Rules"), "The rules in force, the seed and each rule's counters.")
    rule = _json(_ref("Rule"), "The rule.")
    journal = _json(_ref("Requests"), "Matching requests, oldest first.")
    return {
        "/__admin": {
            "get": _op(
                "The admin endpoints",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"endpoints": {"type": "array", "items": {"type": "string"}}},
                        },
                        "Each endpoint as `METHODS path`.",
                    )
                },
                tag="admin",
            )
        },
        "/__admin/faults": {
            "get": _op("The rules in force", {"200": rules}, tag="faults"),
            "post": _op(
                "Add one rule, or several as {rules: [...]}",
                {
                    "201": _json(_ref("Rule"), "Added (bulk: {rules: [...]})."),
                    "400": _BAD,
                    "409": _json(_ref("Error"), "A rule with that id exists."),
                    "413": _json(_ref("Error"), "Body too large."),
                    "422": _BAD,
                },
                tag="faults",
                body=_RULE_BODY,
            ),
            "put": _op(
                "Replace every rule (a rule file's content: {seed?, rules})",
                {"200": rules, "400": _BAD, "422": _BAD},
                tag="faults",
                body={"required": True, "content": {_JSON: {"schema": _ref("RuleFile")}}},
            ),
        },
        "/__admin/faults/reset": {
            "post": _op("Back to the start-up rules", {"200": rules}, tag="faults"),
        },
        "/__admin/faults/{rule_id}": {
            "parameters": [_RULE_ID],
            "get": _op("One rule", {"200": rule, "404": _NOT_FOUND}, tag="faults"),
            "put": _op(
                "Replace (or create) one rule; its counters start again",
                {"200": rule, "201": rule, "400": _BAD, "422": _BAD},
                tag="faults",
                body=_RULE_BODY,
            ),
            "patch": _op(
                "Enable or disable one rule in place, keeping its position and counters",
                {"200": rule, "400": _BAD, "404": _NOT_FOUND, "422": _BAD},
                tag="faults",
                description="Only `enabled` can be patched (any other field is a 422 naming it; "
                "PUT replaces a rule). A disabled rule neither matches nor counts; with several "
                "workers or a shared Redis state the change applies in every process at once, and a "
                "reset comes back to the start-up rules.",
                body={
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"enabled": {"type": "boolean"}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            ),
            "delete": _op(
                "Delete one rule", {"204": {"description": "Deleted."}, "404": _NOT_FOUND}, tag="faults"
            ),
        },
        "/__admin/requests": {
            "get": _op(
                "The journal", {"200": journal, "422": _BAD}, tag="journal", params=[*_FILTER_PARAMS, _LIMIT]
            ),
            "delete": _op(
                "Forget the journal (or one session's entries)",
                {
                    "200": _json(
                        {"type": "object", "properties": {"deleted": {"type": "integer"}}}, "How many."
                    )
                },
                tag="journal",
                params=[_SESSION],
            ),
        },
        "/__admin/requests/count": {
            "get": _op(
                "How many requests match",
                {
                    "200": _json(
                        {"type": "object", "properties": {"count": {"type": "integer"}}}, "The count."
                    ),
                    "422": _BAD,
                },
                tag="journal",
                params=_FILTER_PARAMS,
            ),
        },
        "/__admin/requests/wait": {
            "post": _op(
                "Wait until count matching requests have arrived (answered, when the filter looks at status)",
                {"200": journal, "408": _json(_ref("Error"), "Not within timeout_s."), "422": _BAD},
                tag="journal",
                body={
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "filter": {"type": "object", "description": "The journal's filters."},
                                    "count": {"type": "integer", "minimum": 1, "default": 1},
                                    "timeout_s": {
                                        "type": "number",
                                        "minimum": 0,
                                        "maximum": 300,
                                        "default": 5,
                                    },
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            ),
        },
        "/__admin/events": {
            "get": _op(
                "The journal as Server-Sent Events, live",
                {
                    "200": {
                        "description": "text/event-stream: each request once completed, `id:` its seq, "
                        "`data:` the journal's object; `event: gap` when a resume point is gone.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "422": _BAD,
                    "503": _json(_ref("Error"), "Too many streams open."),
                },
                tag="journal",
                description="Takes the journal's filters. `limit=N` first replays the newest N matching "
                "requests; a `Last-Event-ID` header resumes after that request without losing any the "
                "journal still holds.",
                params=[
                    *_FILTER_PARAMS,
                    _query("limit", "Replay the newest N first.", {"type": "integer", "minimum": 0}),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer"},
                    },
                ],
            ),
        },
        "/__admin/reset": {
            "post": _op(
                "Reset everything (or one session's counters, journal, buckets, held requests)",
                {"200": _json({"type": "object"}, "What was dropped.")},
                tag="admin",
                params=[_SESSION],
            ),
        },
        "/__admin/compliance": {
            "get": _op(
                "How well the clients behaved: verdict, score and findings",
                {"200": _json(_ref("Compliance"), "The report."), "422": _BAD},
                tag="compliance",
                params=[
                    _SESSION,
                    _query(
                        "max_attempts", "Warn past this many attempts.", {"type": "integer", "minimum": 1}
                    ),
                    _query(
                        "outage_after",
                        "Failures in a row that make an outage.",
                        {"type": "integer", "minimum": 1},
                    ),
                ],
            ),
        },
        "/__admin/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="admin",
            ),
        },
        "/__admin/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.0.")}, tag="admin"),
        },
        "/__admin/ui": {
            "get": _op(
                "The dashboard (HTML)",
                {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                tag="dashboard",
            ),
        },
        "/__admin/ui/app.js": {
            "get": _op("The dashboard's script", {"200": {"description": "JavaScript."}}, tag="dashboard"),
        },
        "/__admin/ui/app.css": {
            "get": _op("The dashboard's style sheet", {"200": {"description": "CSS."}}, tag="dashboard"),
        },
        "/__admin/ui/yaml": {
            "post": _op(
                "YAML (or JSON) text as JSON, for pasting rules",
                {
                    "200": _json({"type": "object", "properties": {"value": {}}}, "The JSON value."),
                    "400": _json(_ref("Error"), "Not YAML (the message names the line)."),
                    "413": _json(_ref("Error"), "Body too large."),
                },
                tag="dashboard",
                body={"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}},
            ),
        },
        "/__admin/ui/presets": {
            "get": _op(
                "The presets' rules, by name (the page adds them with POST /__admin/faults)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "presets": {
                                    "type": "object",
                                    "additionalProperties": {"type": "array", "items": _ref("Rule")},
                                }
                            },
                        },
                        "Every preset.",
                    )
                },
                tag="dashboard",
            ),
        },
        "/__admin/replay": {
            "get": _op(
                "Replay mode only: the HAR file being replayed",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "file": {"type": "string"},
                                "match": {"type": "string"},
                                "entries": {"type": "integer"},
                                "recovered": {"type": "boolean"},
                                "requests": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "What is loaded: the file, how requests are matched, the entries (first 1000 "
                        "labels), and whether a damaged file was recovered.",
                    )
                },
                tag="replay",
                description="Served only by `python -m mock_server replay` (in front of the fault "
                "layer, same access rules); the fake and proxy mode answer 404.",
            ),
        },
        "/__admin/replay/reload": {
            "post": _op(
                "Replay mode only: read the HAR file again",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "file": {"type": "string"},
                                "entries": {"type": "integer"},
                                "recovered": {"type": "boolean"},
                            },
                        },
                        "Reloaded.",
                    ),
                    "422": _json(_ref("Error"), "The file could not be read; the old entries stay."),
                },
                tag="replay",
                description="Served only by `python -m mock_server replay`; the fake and proxy mode "
                "answer 404.",
            ),
        },
    }


def _schemas() -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "object"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                        "details": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "loc": {
                                        "type": "array",
                                        "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                    },
                                    "msg": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            },
        },
        "Fault": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [
                        "latency",
                        "status",
                        "timeout",
                        "reset",
                        "close",
                        "truncate",
                        "malformed_json",
                        "wrong_content_type",
                        "slow_body",
                    ],
                },
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "retry_after": {"oneOf": [{"type": "integer"}, obj]},
                "message": {"type": "string"},
                "hang_s": {"type": "number"},
                "fraction": {"type": "number"},
                "bytes_per_s": {"type": "number"},
                "chunk_delay_ms": {"type": "number"},
                "chunk_bytes": {"type": "integer"},
                "content_type": {"type": "string"},
                "fixed_ms": {"type": "number"},
                "uniform": obj,
                "normal": obj,
                "lognormal": obj,
                "latency": obj,
            },
        },
        "Rule": {
            "type": "object",
            "description": "A fault rule, as in a rule file (see the README's fault rules).",
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"},
                "match": {
                    "type": "object",
                    "properties": {
                        "method": {
                            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                        },
                        "path": {"type": "string"},
                        "tenant": {"type": "string"},
                        "session": {"type": "string"},
                        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "fault": _ref("Fault"),
                "sequence": {
                    "type": "array",
                    "items": {"oneOf": [_ref("Fault"), {"type": "string", "enum": ["ok"]}]},
                },
                "every_nth": {"type": "integer", "minimum": 1},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "times": {"type": "integer", "minimum": 1},
                "after": {"type": "integer", "minimum": 0},
                "window": {
                    "type": "object",
                    "properties": {"start_s": {"type": "number"}, "duration_s": {"type": "number"}},
                },
                "when": {
                    "type": "string",
                    "enum": ["before", "after"],
                    "default": "before",
                    "description": "before: the fault answers instead of the API; after: the API acts "
                    "first and the client gets the fault instead of its answer.",
                },
                "enabled": {
                    "type": "boolean",
                    "default": True,
                    "description": "false: the rule keeps its place and counters but neither matches "
                    "nor counts (shown only when false).",
                },
            },
            "additionalProperties": True,
        },
        "RuleFile": {
            "type": "object",
            "properties": {"seed": {"type": "integer"}, "rules": {"type": "array", "items": _ref("Rule")}},
        },
        "Rules": {
            "type": "object",
            "properties": {
                "seed": {"type": "integer"},
                "rules": {"type": "array", "items": _ref("Rule")},
                "stats": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"matched": {"type": "integer"}, "fired": {"type": "integer"}},
                    },
                },
            },
        },
        "Request": {
            "type": "object",
            "description": "One journal entry.",
            "properties": {
                "seq": {"type": "integer"},
                "request_id": {"type": "string"},
                "method": {"type": "string"},
                "path": {"type": "string"},
                "query": {"type": "string", "description": "Secret-looking values redacted."},
                "tenant": {"type": "string", "nullable": True},
                "session": {"type": "string", "nullable": True},
                "idempotency_key": {"type": "string", "nullable": True},
                "arrived_at": {"type": "number"},
                "arrived_at_iso": {"type": "string"},
                "status": {"type": "integer", "nullable": True},
                "outcome": {"type": "string", "nullable": True},
                "completed": {"type": "boolean"},
                "fault": {"type": "string", "nullable": True},
                "rule": {"type": "string", "nullable": True},
                "rules": {"type": "array", "items": {"type": "string"}},
                "injected_delay_ms": {"type": "number"},
                "duration_ms": {"type": "number", "nullable": True},
                "retry_after_s": {"type": "number", "nullable": True},
                "ratelimit_remaining": {"type": "integer", "nullable": True},
                "ratelimit_reset_at": {"type": "number", "nullable": True},
            },
        },
        "Requests": {
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "requests": {"type": "array", "items": _ref("Request")},
            },
        },
        "Compliance": {
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": ["pass", "fail"]},
                "score": {"type": "number"},
                "session": {"type": "string", "nullable": True},
                "requests": {"type": "integer"},
                "findings": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string"},
                            "severity": {"type": "string", "enum": ["error", "warning"]},
                            "message": {"type": "string"},
                            "count": {"type": "integer"},
                            "requests": {"type": "array", "items": obj},
                        },
                    },
                },
            },
        },
    }


def admin_openapi() -> dict[str, Any]:
    """The admin API's OpenAPI 3.0 document."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mock_server admin API",
            "version": "1",
            "description": "Fault rules, the request journal, compliance and metrics of the fake. "
            "Loopback clients only, or every call with X-Admin-Token when the fake has --admin-token.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"AdminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"}},
        },
        "security": [{}, {"AdminToken": []}],
        "paths": _paths(),
    }
