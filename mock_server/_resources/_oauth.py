"""``POST /oauth/token``: the client-credentials grant (RFC 6749 section 4.4).

Its errors have RFC 6749's shape (section 5.2), not the API's error envelope. Tokens are kept by
the state backend, so with a shared state a token issued by one process is good on every other.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from .._ratelimit import FailureLimiter
from .._state import ApiState
from ._common import Call, client_host, json_response


class OAuth:
    def __init__(
        self, state: ApiState, *, failures: FailureLimiter, check_failures: Callable[[str | None], None]
    ) -> None:
        self.state = state
        self.failures = failures
        self.check_failures = check_failures

    async def token(self, request: Request, call: Call) -> Response:
        rid = call.rid

        def oauth_error(status: int, error: str, description: str) -> Response:
            headers = {"Cache-Control": "no-store"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="resonanceos"'
            return json_response(
                {"error": error, "error_description": description, "request_id": rid}, status, headers
            )

        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "send the form as application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl(call.raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except (UnicodeDecodeError, ValueError):
            return oauth_error(400, "invalid_request", "the form is not valid UTF-8 urlencoded data")
        grant = form.get("grant_type")
        if grant is None:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return oauth_error(401, "invalid_client", "the Basic credential is malformed")
            client_id, secret = user, password
        if not client_id or secret is None:
            return oauth_error(401, "invalid_client", "client_id and client_secret are required")
        host = client_host(request)
        # A throttled address gets the API's 429 (the OAuth error set has no such error).
        self.check_failures(host)
        issued = await self.state.issue_token(client_id, secret)
        if issued is None:
            self.failures.failed(host)
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        token, ttl = issued
        return json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
            headers={"Cache-Control": "no-store"},
        )
