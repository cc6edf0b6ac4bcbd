"""The dashboard's routes without a browser: assets, access, YAML, enabling and disabling, presets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server._ui import parse_yaml


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=":memory:")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: ServerThread) -> None:
    requests.post(f"{fake.url}/__admin/reset", timeout=5)


def test_the_page_and_its_assets_are_self_contained(fake: ServerThread) -> None:
    page = requests.get(f"{fake.url}/__admin/ui", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for asset in ("app.js", "app.css"):
        body = requests.get(f"{fake.url}/__admin/ui/{asset}", timeout=5).text
        assert "http://" not in body and "https://" not in body, asset
    assert "http://" not in page.text and "https://" not in page.text
    assert "<script>" not in page.text  # no inline script: the CSP forbids it


def test_with_a_token_only_the_pages_static_files_are_public() -> None:
    with ServerThread(ServerConfig(db=":memory:", admin_token="tok")) as server:
        for path in ("/__admin/ui", "/__admin/ui/app.js", "/__admin/ui/app.css"):
            assert requests.get(f"{server.url}{path}", timeout=5).status_code == 200, path
        for path in ("/__admin/ui/presets", "/__admin/events", "/__admin/faults"):
            assert requests.get(f"{server.url}{path}", timeout=5).status_code == 401, path
        patch = requests.patch(f"{server.url}/__admin/faults/x", json={"enabled": False}, timeout=5)
        assert patch.status_code == 401
        assert requests.post(f"{server.url}/__admin/ui/yaml", data="a: 1", timeout=5).status_code == 401


def test_yaml_becomes_json_and_a_mistake_names_its_line(fake: ServerThread) -> None:
    ok = requests.post(f"{fake.url}/__admin/ui/yaml", data="id: x\nfault: {type: reset}\n", timeout=5)
    assert ok.json() == {"value": {"id": "x", "fault": {"type": "reset"}}}
    bad = requests.post(f"{fake.url}/__admin/ui/yaml", data="id: x\nfault: [\n", timeout=5)
    assert bad.status_code == 400
    assert "line" in bad.json()["error"]["message"]


def test_yaml_aliases_are_refused_so_a_bomb_cannot_expand() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
    with pytest.raises(ValueError, match="aliases"):
        parse_yaml(bomb)
    assert parse_yaml("when: 2024-01-01") == {"when": "2024-01-01"}
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_yaml("[" * 5000)


def test_disabling_keeps_the_rule_in_place_with_its_counters_and_enabling_resumes_it(
    fake: ServerThread,
) -> None:
    url = fake.url
    rules = [
        {"id": "r1", "match": {"path": "/health"}, "fault": {"type": "status", "status": 502}},
        {"id": "r2", "match": {"path": "/nowhere"}, "fault": {"type": "reset"}},
    ]
    requests.post(f"{url}/__admin/faults", json={"rules": rules}, timeout=5)
    assert requests.get(f"{url}/health", timeout=5).status_code == 502
    off = requests.patch(f"{url}/__admin/faults/r1", json={"enabled": False}, timeout=5)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert requests.get(f"{url}/health", timeout=5).status_code == 200  # no longer in force
    listed = requests.get(f"{url}/__admin/faults", timeout=5).json()
    assert [(r["id"], r.get("enabled", True)) for r in listed["rules"]] == [("r1", False), ("r2", True)]
    assert listed["stats"]["r1"] == {"matched": 1, "fired": 1}
    assert requests.patch(f"{url}/__admin/faults/r1", json={"enabled": True}, timeout=5).status_code == 200
    assert requests.get(f"{url}/health", timeout=5).status_code == 502
    listed = requests.get(f"{url}/__admin/faults", timeout=5).json()
    assert [r["id"] for r in listed["rules"]] == ["r1", "r2"]
    assert listed["stats"]["r1"] == {"matched": 2, "fired": 2}
    bad = requests.patch(f"{url}/__admin/faults/r1", json={"enabled": "no"}, timeout=5)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["enabled"]
    assert requests.patch(f"{url}/__admin/faults/nope", json={"enabled": False}, timeout=5).status_code == 404
    # The per-process parking routes are gone.
    for method, path in (("GET", "/__admin/ui/disabled"), ("PUT", "/__admin/ui/disabled/r1")):
        assert requests.request(method, url + path, timeout=5).status_code == 404


def test_presets_are_listed_with_their_rules(fake: ServerThread) -> None:
    presets = requests.get(f"{fake.url}/__admin/ui/presets", timeout=5).json()["presets"]
    assert {"flaky", "chaos", "rate-limited"} <= set(presets)
    added = requests.post(f"{fake.url}/__admin/faults", json={"rules": presets["flaky"]}, timeout=5)
    assert added.status_code == 201


def test_the_serve_banner_names_the_dashboard_and_the_docs_and_both_answer(fake: ServerThread) -> None:
    from mock_server._cli import banner

    text = banner(fake.config, fake.url)
    urls = [word.rstrip(")") for word in text.split() if word.startswith(f"{fake.url}/")]
    assert f"{fake.url}/__admin/ui" in urls and f"{fake.url}/docs" in urls
    for url in urls:
        assert requests.get(url, timeout=5).status_code == 200, url


def test_a_proxy_in_front_of_the_fake_serves_the_dashboard_its_stream_and_docs(fake: ServerThread) -> None:
    from mock_server._proxy._app import FrontThread, ProxyConfig

    from .conftest import Sse

    with FrontThread(ProxyConfig(upstream=fake.url)) as proxy:
        assert requests.get(f"{proxy.url}/__admin/ui", timeout=5).status_code == 200
        # /docs is the upstream's: the proxy forwards it (and journals it) instead of answering.
        assert requests.get(f"{proxy.url}/docs", timeout=5).status_code == 200
        forwarded = requests.get(f"{proxy.url}/__admin/requests", params={"path": "/docs"}, timeout=5).json()
        assert len(forwarded["requests"]) == 1, forwarded
        stream = Sse(f"{proxy.url}/__admin/events")
        try:
            requests.get(f"{proxy.url}/health", timeout=5)
            event = stream.requests(1)[0]
        finally:
            stream.close()
        assert event["data"]["path"] == "/health" and event["data"]["status"] == 200
