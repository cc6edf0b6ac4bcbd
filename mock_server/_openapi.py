"""The OpenAPI 3.1 description of the fake, kept beside the code it describes.

Every operation documents its error responses, including the ones fault injection
produces (429 with ``Retry-After``, 5xx with the error body), so a schema-driven tester
run against the fake with faults on still finds every response documented.
"""

from __future__ import annotations

from typing import Any

from ._inputs import NAME_PATTERN

_REF = "#/components/schemas/"
_UNIT = {"type": "number", "minimum": 0, "maximum": 1}
_VECTOR = {
    "type": "array",
    "items": _UNIT,
    "minItems": 8,
    "maxItems": 8,
    "description": "Exactly 8 finite numbers in 0..1.",
}
IDEMPOTENCY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
# What the server issues as ``next_cursor``: a URL-safe payload, a dot, a URL-safe tag. A value
# of this shape the server did not issue (or issued to another tenant) is still 400: that
# rejects state, not format, and the schemathesis configuration says so.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
_CURSOR = {"type": "string", "minLength": 3, "maxLength": 1024, "pattern": CURSOR_PATTERN}
# A date range is a named period or two calendar dates; the pattern admits only real dates
# (February 29 is accepted in any year and read as the 28th when the year has none).
_DAY = r"[1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-9])|(0[13-9]|1[0-2])-30|(0[13578]|1[02])-31)"
DATE_RANGE_PATTERN = rf"^(today|7d|30d|{_DAY}\.\.{_DAY})$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _header(description: str, schema: dict[str, Any] | None = None, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


_REQUEST_ID = _header("The client's X-Request-ID echoed, or a new one.", required=True)
_RATE_HEADERS = {
    "X-RateLimit-Limit": _header("Requests allowed per window.", {"type": "integer"}),
    "X-RateLimit-Remaining": _header("Requests left now.", {"type": "integer"}),
    "X-RateLimit-Reset": _header("When to send again, Unix epoch seconds.", {"type": "integer"}),
    "RateLimit-Policy": _header('IETF policy, e.g. "default";q=600;w=60.'),
    "RateLimit": _header('IETF state, e.g. "default";r=99;t=1.'),
}
_RETRY_AFTER = _header("Delta-seconds or an HTTP-date.")
# Every 429 says when to come back, the limiter's and an injected one alike.
_RETRY_AFTER_REQUIRED = _header("Delta-seconds or an HTTP-date; on every 429.", required=True)


def _error(
    description: str, *, retry_after: bool = False, authenticated: bool = True, required_retry: bool = False
) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": _REQUEST_ID}
    if authenticated:
        headers.update(_RATE_HEADERS)
    if required_retry:
        headers["Retry-After"] = _RETRY_AFTER_REQUIRED
    elif retry_after:
        headers["Retry-After"] = _RETRY_AFTER
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _errors(*statuses: int, authenticated: bool = True) -> dict[str, Any]:
    text = {
        400: "Malformed JSON, a bad cursor or header.",
        401: "Missing or bad credentials.",
        403: "Another tenant's data.",
        404: "No such resource.",
        405: "Method not allowed.",
        409: "Already exists.",
        412: "If-Match did not match.",
        413: "Body over 1 MiB.",
        415: "Not application/json.",
        422: "Validation failed; see details.",
    }
    out = {str(s): _error(text[s], authenticated=authenticated) for s in statuses}
    # Produced by the server's own limiter and by fault injection.
    out["429"] = _error(
        "Rate limited (or an injected 429).", required_retry=True, authenticated=authenticated
    )
    out["500"] = _error("Internal error (injected).", authenticated=authenticated)
    out["502"] = _error("Bad gateway (injected).", authenticated=authenticated)
    out["503"] = _error("Unavailable (injected).", retry_after=True, authenticated=authenticated)
    out["504"] = _error("Gateway timeout (injected).", authenticated=authenticated)
    out["default"] = _error(
        "Any other status a fault rule injects.", retry_after=True, authenticated=authenticated
    )
    if 401 in statuses:
        out["401"]["headers"]["WWW-Authenticate"] = _header("The accepted schemes.", required=True)
    return out


def _ok(
    description: str,
    schema: str | None,
    status: str = "200",
    *,
    extra_headers: dict[str, Any] | None = None,
    authenticated: bool = True,
) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": _REQUEST_ID}
    if authenticated:
        headers.update(_RATE_HEADERS)
    headers.update(extra_headers or {})
    response: dict[str, Any] = {"description": description, "headers": headers}
    if schema is not None:
        response["content"] = {"application/json": {"schema": _ref(schema)}}
    return {status: response}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays the first response for a repeat with the same body within 24 h; "
    "a different body is 422. Keys are per tenant.",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_PATTERN},
}
_PATH = [
    {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "profile_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    },
]
_VALIDATORS = {
    "ETag": _header("Entity tag.", required=True),
    "Last-Modified": _header("HTTP-date.", required=True),
}
_CACHEABLE = {**_VALIDATORS, "Cache-Control": _header("private, max-age=N", required=True)}
_SECURITY: list[dict[str, list[str]]] = [
    {"ApiKey": []},
    {"Bearer": []},
    {"Basic": []},
    {"Signature": [], "Timestamp": []},
]

_SCHEMAS: dict[str, Any] = {
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
                            "required": ["loc", "msg"],
                            "properties": {
                                "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                                "msg": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "OAuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "string",
                "enum": ["invalid_request", "invalid_client", "unsupported_grant_type"],
            },
            "error_description": {"type": "string"},
            "request_id": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "timestamp"],
        "properties": {
            "status": {"const": "ok"},
            "version": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "GenerateRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 10000},
            "tenant": {"type": ["string", "null"], "description": "Must be the caller's tenant (else 403)."},
            "profile_name": {
                "type": ["string", "null"],
                "pattern": NAME_PATTERN,
                "description": "An existing profile (else 404).",
            },
            "max_length": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 256},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["prompts"],
        "properties": {
            "prompts": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {"type": "string"},
                "description": "Each prompt of 1..10000 characters; others get a per-item error.",
            },
            "tenant": {"type": ["string", "null"]},
            "profile_name": {"type": ["string", "null"], "pattern": NAME_PATTERN},
            "max_length": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 256},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
        },
    },
    "GenerateResult": {
        "type": "object",
        "required": ["content", "hrv_vector", "metadata"],
        "properties": {
            "content": {"type": "string"},
            "hrv_vector": _VECTOR,
            "metadata": {
                "type": "object",
                "required": [
                    "tenant",
                    "profile_name",
                    "model",
                    "tokens",
                    "temperature",
                    "max_length",
                    "request_id",
                    "created_at",
                ],
                "properties": {
                    "tenant": {"type": "string"},
                    "profile_name": {"type": ["string", "null"]},
                    "model": {"type": "string"},
                    "tokens": {"type": "integer", "minimum": 1},
                    "temperature": {"type": "number"},
                    "max_length": {"type": "integer"},
                    "request_id": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
    "BatchResult": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "status"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "status": {"enum": ["ok", "error"]},
                        "result": _ref("GenerateResult"),
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "request_id": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "Profile": {
        "type": "object",
        "required": [
            "tenant",
            "profile_name",
            "hrv_vector",
            "metadata",
            "version",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "tenant": {"type": "string"},
            "profile_name": {"type": "string", "pattern": NAME_PATTERN},
            "hrv_vector": _VECTOR,
            "metadata": {"type": "object"},
            "version": {"type": "integer", "minimum": 1},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "ProfileCreate": {
        "type": "object",
        "required": ["tenant", "profile_name", "hrv_vector"],
        "properties": {
            "tenant": {"type": "string", "description": "Must be the caller's tenant (else 403)."},
            "profile_name": {"type": "string", "pattern": NAME_PATTERN},
            "hrv_vector": _VECTOR,
            "metadata": {"type": ["object", "null"], "description": "At most 16 KiB as JSON."},
        },
    },
    "ProfileUpdate": {
        "type": "object",
        "required": ["hrv_vector"],
        "properties": {"hrv_vector": _VECTOR, "metadata": {"type": ["object", "null"]}},
    },
    "ProfilePage": {
        "type": "object",
        "required": ["items", "next_cursor", "has_more"],
        "properties": {
            "items": {"type": "array", "items": _ref("Profile")},
            "next_cursor": {"anyOf": [_CURSOR, {"type": "null"}]},
            "has_more": {"type": "boolean"},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["tenant", "date_range", "total", "by_endpoint", "by_status", "by_day"],
        "properties": {
            "tenant": {"type": "string"},
            "date_range": {
                "type": "object",
                "required": ["start", "end"],
                "properties": {
                    "start": {"type": "string", "format": "date"},
                    "end": {"type": "string", "format": "date"},
                },
            },
            "total": {"type": "integer", "minimum": 0},
            "by_endpoint": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_day": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "requests"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "requests": {"type": "integer"},
                    },
                },
            },
        },
    },
    "Performance": {
        "type": "object",
        "required": ["latency_ms", "error_rate", "requests_per_second", "window"],
        "properties": {
            "latency_ms": {
                "type": "object",
                "required": ["p50", "p95", "p99", "mean"],
                "properties": {k: {"type": "number", "minimum": 0} for k in ("p50", "p95", "p99", "mean")},
            },
            "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "requests_per_second": {"type": "number", "minimum": 0},
            "requests": {"type": "integer", "minimum": 0},
            "window": {"enum": ["1m", "5m", "1h", "24h"]},
            "metric_type": {"enum": ["latency", "errors", "throughput", "all"]},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"const": "client_credentials"},
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
        },
    },
    "Token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 1},
        },
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the fake."""
    oauth_error = {
        "description": "RFC 6749 error.",
        "headers": {"X-Request-ID": _REQUEST_ID},
        "content": {"application/json": {"schema": _ref("OAuthError")}},
    }
    token_errors = _errors(authenticated=False)
    token_errors.update({"400": oauth_error, "401": oauth_error})
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness; no credentials needed.",
                "security": [],
                "responses": {
                    **_ok("Healthy.", "Health", authenticated=False),
                    **_errors(authenticated=False),
                },
            }
        },
        "/oauth/token": {
            "post": {
                "operationId": "issueToken",
                "summary": "OAuth2 client credentials grant.",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": _ref("TokenRequest")}},
                },
                "responses": {**_ok("A token.", "Token", authenticated=False), **token_errors},
            }
        },
        "/hr_generate": {
            "post": {
                "operationId": "generate",
                "summary": "Generate content (deterministic).",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body("GenerateRequest"),
                "responses": {
                    **_ok(
                        "Generated.",
                        "GenerateResult",
                        extra_headers={"Idempotent-Replayed": _header("true on a replay.")},
                    ),
                    **_errors(400, 401, 403, 404, 413, 415, 422),
                },
            }
        },
        "/hr_generate/batch": {
            "post": {
                "operationId": "generateBatch",
                "summary": "Generate for up to 50 prompts, in order.",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body("BatchRequest"),
                "responses": {
                    **_ok(
                        "One result per prompt.",
                        "BatchResult",
                        extra_headers={"Idempotent-Replayed": _header("true on a replay.")},
                    ),
                    **_errors(400, 401, 403, 404, 413, 415, 422),
                },
            }
        },
        "/profiles": {
            "get": {
                "operationId": "listProfiles",
                "summary": "The caller's profiles by name, a page at a time.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "Opaque; from next_cursor. Anything else is 400.",
                        "schema": _CURSOR,
                    },
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    **_ok(
                        "A page.",
                        "ProfilePage",
                        extra_headers={
                            "ETag": _CACHEABLE["ETag"],
                            "Cache-Control": _CACHEABLE["Cache-Control"],
                        },
                    ),
                    **_ok("Not modified.", None, "304", extra_headers={"ETag": _CACHEABLE["ETag"]}),
                    **_errors(400, 401, 422),
                },
            },
            "post": {
                "operationId": "createProfile",
                "summary": "Create a profile.",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body("ProfileCreate"),
                "responses": {
                    **_ok(
                        "Created.",
                        "Profile",
                        "201",
                        extra_headers={
                            **_VALIDATORS,
                            "Location": _header("The new profile's path.", required=True),
                            "Idempotent-Replayed": _header("true on a replay."),
                        },
                    ),
                    **_errors(400, 401, 403, 409, 413, 415, 422),
                },
                "links": {},
            },
        },
        "/profiles/{tenant}/{profile_name}": {
            "parameters": _PATH,
            "get": {
                "operationId": "getProfile",
                "summary": "One profile; cacheable and conditional.",
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "If-Modified-Since",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    **_ok("The profile.", "Profile", extra_headers=_CACHEABLE),
                    **_ok("Not modified.", None, "304", extra_headers=_CACHEABLE),
                    **_errors(401, 403, 404, 422),
                },
            },
            "put": {
                "operationId": "updateProfile",
                "summary": "Replace a profile's vector and metadata.",
                "parameters": [
                    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
                ],
                "requestBody": _body("ProfileUpdate"),
                "responses": {
                    **_ok("Updated; version + 1.", "Profile", extra_headers=_VALIDATORS),
                    **_errors(400, 401, 403, 404, 412, 413, 415, 422),
                },
            },
            "delete": {
                "operationId": "deleteProfile",
                "summary": "Delete a profile.",
                "parameters": [
                    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {**_ok("Deleted.", None, "204"), **_errors(401, 403, 404, 412, 422)},
            },
        },
        "/analytics/usage": {
            "get": {
                "operationId": "usage",
                "summary": "Requests by endpoint, status and day, from real traffic.",
                "parameters": [
                    {
                        "name": "date_range",
                        "in": "query",
                        "required": False,
                        "description": "today, 7d, 30d or YYYY-MM-DD..YYYY-MM-DD (reversed: empty).",
                        "schema": {"type": "string", "pattern": DATE_RANGE_PATTERN, "default": "7d"},
                    }
                ],
                "responses": {**_ok("Usage.", "Usage"), **_errors(401, 422)},
            }
        },
        "/analytics/performance": {
            "get": {
                "operationId": "performance",
                "summary": "Latency, error rate and throughput from real traffic.",
                "parameters": [
                    {
                        "name": "metric_type",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["latency", "errors", "throughput", "all"], "default": "all"},
                    },
                    {
                        "name": "timeframe",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["1m", "5m", "1h", "24h"], "default": "5m"},
                    },
                ],
                "responses": {**_ok("Performance.", "Performance"), **_errors(401, 422)},
            }
        },
    }
    created = paths["/profiles"]["post"]
    del created["links"]
    created["responses"]["201"]["links"] = {
        "GetProfile": {
            "operationId": "getProfile",
            "parameters": {
                "tenant": "$response.body#/tenant",
                "profile_name": "$response.body#/profile_name",
            },
        },
        "UpdateProfile": {
            "operationId": "updateProfile",
            "parameters": {
                "tenant": "$response.body#/tenant",
                "profile_name": "$response.body#/profile_name",
            },
        },
        "DeleteProfile": {
            "operationId": "deleteProfile",
            "parameters": {
                "tenant": "$response.body#/tenant",
                "profile_name": "$response.body#/profile_name",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ResonanceOS v6 (fake)",
            "version": version,
            "description": "A fault-injecting fake of the ResonanceOS v6 content-generation API.",
        },
        "servers": [{"url": "/"}],
        "security": _SECURITY,
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key or a token from /oauth/token.",
                },
                "Basic": {"type": "http", "scheme": "basic"},
                "Signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Signature",
                    "description": "sha256=<hex HMAC-SHA256(secret, METHOD\\nPATH?QUERY\\nTIMESTAMP\\n"
                    "hex(SHA256(body)))>; replays and skews over 300 s are 401.",
                },
                "Timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
            },
        },
    }
