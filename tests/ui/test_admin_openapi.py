"""/__admin/openapi.json names every admin route; /docs serves Swagger UI from the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server._proxy._app import FrontThread, ReplayConfig


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=":memory:")) as server:
        yield server


def test_the_admin_document_names_exactly_the_routes_the_admin_app_serves(fake: ServerThread) -> None:
    served = set()
    for endpoint in requests.get(f"{fake.url}/__admin", timeout=5).json()["endpoints"]:
        methods, path = endpoint.rsplit(" ", 1)
        served |= {(m, path) for m in methods.split() if m != "HEAD"}
    doc = requests.get(f"{fake.url}/__admin/openapi.json", timeout=5).json()
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert documented - REPLAY_ONLY == served
    assert REPLAY_ONLY <= documented
    assert doc["openapi"].startswith("3.0.")


#: Served in front of the fault layer by replay mode only (mock_server/_proxy/_app.py).
REPLAY_ONLY = {("GET", "/__admin/replay"), ("POST", "/__admin/replay/reload")}


def test_the_replay_routes_are_documented_as_replay_only_and_replay_mode_serves_them(
    fake: ServerThread,
) -> None:
    doc = requests.get(f"{fake.url}/__admin/openapi.json", timeout=5).json()
    for method, path in REPLAY_ONLY:
        op = doc["paths"][path][method.lower()]
        assert "replay" in op["description"] and "404" in op["description"]
        assert requests.request(method, fake.url + path, timeout=5).status_code == 404
    har = Path(__file__).parents[1] / "proxy" / "data" / "devtools.har"
    with FrontThread(ReplayConfig(har=str(har), port=0)) as replay:
        info = requests.get(f"{replay.url}/__admin/replay", timeout=5)
        assert info.status_code == 200 and set(info.json()) <= set(
            doc["paths"]["/__admin/replay"]["get"]["responses"]["200"]["content"]["application/json"][
                "schema"
            ]["properties"]
        )
        assert requests.post(f"{replay.url}/__admin/replay/reload", timeout=5).status_code == 200


def test_the_rule_schema_names_every_rule_field(fake: ServerThread) -> None:
    from mock_server._faults._parse import _RULE_KEYS

    doc = requests.get(f"{fake.url}/__admin/openapi.json", timeout=5).json()
    assert set(doc["components"]["schemas"]["Rule"]["properties"]) == _RULE_KEYS
    patch = doc["paths"]["/__admin/faults/{rule_id}"]["patch"]
    assert set(patch["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"enabled"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_in_the_admin_document_resolves(fake: ServerThread) -> None:
    doc = requests.get(f"{fake.url}/__admin/openapi.json", timeout=5).json()
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                assert op["responses"], (method, path)
                names = {p["name"] for p in item.get("parameters", [])}
                assert all(f"{{{n}}}" in path for n in names)


def test_the_admin_document_follows_the_admin_access_rules() -> None:
    with ServerThread(ServerConfig(db=":memory:", admin_token="tok")) as server:
        assert requests.get(f"{server.url}/__admin/openapi.json", timeout=5).status_code == 401
        ok = requests.get(f"{server.url}/__admin/openapi.json", headers={"X-Admin-Token": "tok"}, timeout=5)
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/docs", "text/html"),
        ("/docs/docs.js", "text/javascript"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui-standalone-preset.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
    ],
)
def test_docs_files_come_from_the_fake(fake: ServerThread, path: str, kind: str) -> None:
    r = requests.get(f"{fake.url}{path}", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(kind)
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "https://" not in r.text[:5000] or path.endswith(".js")


def test_docs_are_neither_journaled_nor_faulted(fake: ServerThread) -> None:
    requests.post(f"{fake.url}/__admin/reset", timeout=5)
    requests.post(
        f"{fake.url}/__admin/faults",
        json={"id": "all", "fault": {"type": "status", "status": 500}},
        timeout=5,
    )
    try:
        assert requests.get(f"{fake.url}/docs", timeout=5).status_code == 200
        assert requests.get(f"{fake.url}/docs/swagger-ui.css", timeout=5).status_code == 200
        assert requests.get(f"{fake.url}/health", timeout=5).status_code == 500  # the rule is live
        journal = requests.get(f"{fake.url}/__admin/requests", timeout=5).json()["requests"]
        assert [e["path"] for e in journal] == ["/health"]
    finally:
        requests.post(f"{fake.url}/__admin/reset", timeout=5)


def test_docs_refuse_other_methods_and_unknown_files(fake: ServerThread) -> None:
    post = requests.post(f"{fake.url}/docs", timeout=5)
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    missing = requests.get(f"{fake.url}/docs/../etc/passwd", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]
    assert requests.get(f"{fake.url}/docsx", timeout=5).status_code != 200  # not a docs path
