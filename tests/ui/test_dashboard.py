"""The dashboard in a real browser: Playwright driving Debian's headless Chromium.

One browser for the module, one fake (loopback, no token) for most tests and one with an admin
token. Every page records the URLs it asks for and its console: a request to anything but this
machine is aborted and fails the test, and so does a console error. Screenshots go to reports/ui/.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from mock_server import ServerConfig, ServerThread

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():  # pragma: no cover - .ci/run installs it
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPORTS = Path(__file__).resolve().parents[2] / "reports" / "ui"
KEY = {"X-API-Key": "acme-key"}
expect = playwright_api.expect


def _local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=":memory:")) as server:
        yield server


class Watched:
    """A page with what it asked for and what it logged."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.urls: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda req: self.urls.append(req.url))

        def refuse(route: Any) -> None:
            self.outside.append(route.request.url)
            route.abort()

        self.context.route(lambda url: not _local(url), refuse)
        self.page = self.context.new_page()
        #: Statuses a test provokes on purpose: the browser logs each failed fetch as an error.
        self.expected: set[int] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        status = re.search(r"responded with a status of (\d{3})", message.text)
        if status and int(status.group(1)) in self.expected:
            return
        self.errors.append(message.text)

    def shot(self, name: str) -> None:
        REPORTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(REPORTS / f"{name}.png"))


@pytest.fixture
def watched(browser: Any, fake: ServerThread) -> Iterator[Watched]:
    requests.post(f"{fake.url}/__admin/reset", timeout=5)
    w = Watched(browser)
    yield w
    w.context.close()
    assert w.outside == [], "requests left the machine"
    assert w.errors == [], "console errors"


def _open(w: Watched, fake: ServerThread) -> Any:
    page = w.page
    page.goto(f"{fake.url}/__admin/ui")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    return page


def test_the_live_stream_shows_requests_as_they_arrive(watched: Watched, fake: ServerThread) -> None:
    page = _open(watched, fake)
    for i in range(3):
        requests.get(f"{fake.url}/health?live={i}", headers={"X-Mock-Session": "live-s"}, timeout=5)
    rows = page.locator("#requests-body tr", has_text="live=")
    expect(rows).to_have_count(3, timeout=5000)
    first = rows.first
    expect(first).to_contain_text("/health?live=2")  # newest first
    expect(first).to_contain_text("200")
    expect(first).to_contain_text("live-s")
    first.click()
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#details-table")).to_contain_text("live=2")
    watched.shot("live-stream")


def test_the_stream_filter_narrows_the_table(watched: Watched, fake: ServerThread) -> None:
    watched.expected = {422}  # the bad filter
    page = _open(watched, fake)
    page.fill("#filters input[name=status]", "9xx")
    expect(page.locator("#filters .field-error").nth(2)).to_contain_text("must be a status code")
    page.fill("#filters input[name=status]", "")
    page.fill("#filters input[name=path]", "/profiles*")
    time.sleep(0.6)  # the filter applies 300 ms after typing stops
    requests.get(f"{fake.url}/health", timeout=5)
    requests.get(f"{fake.url}/profiles", headers=KEY, timeout=5)
    expect(page.locator("#requests-body tr", has_text="/profiles")).to_have_count(1, timeout=5000)
    expect(page.locator("#requests-body tr", has_text="/health")).to_have_count(0)


def test_a_rule_added_through_the_api_appears_with_its_counters(watched: Watched, fake: ServerThread) -> None:
    page = _open(watched, fake)
    rule = {"id": "api-rule", "match": {"path": "/health"}, "fault": {"type": "status", "status": 503}}
    assert requests.post(f"{fake.url}/__admin/faults", json=rule, timeout=5).status_code == 201
    requests.get(f"{fake.url}/health", timeout=5)
    row = page.locator('#rules-body tr[data-rule="api-rule"]')
    expect(row).to_be_visible(timeout=5000)
    expect(row).to_contain_text("status=503")
    expect(row.locator("td").nth(4)).to_have_text("1", timeout=5000)  # injected once
    watched.shot("rules")


def test_a_rule_deleted_from_the_page_is_gone_from_the_admin_api(
    watched: Watched, fake: ServerThread
) -> None:
    rule = {"id": "doomed", "fault": {"type": "reset"}, "probability": 0.5}
    requests.post(f"{fake.url}/__admin/faults", json=rule, timeout=5)
    page = _open(watched, fake)
    row = page.locator('#rules-body tr[data-rule="doomed"]')
    expect(row).to_be_visible(timeout=5000)
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0, timeout=5000)
    assert requests.get(f"{fake.url}/__admin/faults", timeout=5).json()["rules"] == []


def test_rules_from_the_form_and_from_yaml_with_errors_next_to_their_field(
    watched: Watched, fake: ServerThread
) -> None:
    watched.expected = {422}  # the bad rules
    page = _open(watched, fake)
    page.click("#add-form-box summary")
    page.fill("#rule-form input[name=id]", "form-rule")
    page.fill("#rule-form input[name=status]", "99")
    page.click("#rule-form button[type=submit]")
    status_error = page.locator("#rule-form input[name=status] + .field-error")
    expect(status_error).to_contain_text("400..599", timeout=5000)
    page.fill("#rule-form input[name=status]", "502")
    page.click("#rule-form button[type=submit]")
    expect(page.locator('#rules-body tr[data-rule="form-rule"]')).to_be_visible(timeout=5000)

    page.click("#paste-box summary")
    page.fill("#paste", "id: pasted\nfault: {type: status, status: 429, retry_after: 2}\nevery_nth: 0\n")
    page.click("#paste-submit")
    expect(page.locator("#paste-errors")).to_contain_text("every_nth", timeout=5000)
    page.fill("#paste", "id: pasted\nfault: {type: status, status: 429, retry_after: 2}\nevery_nth: 3\n")
    page.click("#paste-submit")
    expect(page.locator('#rules-body tr[data-rule="pasted"]')).to_be_visible(timeout=5000)
    rules = requests.get(f"{fake.url}/__admin/faults", timeout=5).json()["rules"]
    assert [r["id"] for r in rules] == ["form-rule", "pasted"]
    assert rules[1]["every_nth"] == 3

    # Disable in place: the row stays where it is, greyed, with its counters; Enable undoes it.
    assert requests.get(f"{fake.url}/health", timeout=5).status_code == 502
    row = page.locator('#rules-body tr[data-rule="form-rule"]')
    row.get_by_role("button", name="Disable").click()
    expect(row).to_have_class("off", timeout=5000)
    expect(page.locator("#rules-body tr").first).to_have_attribute("data-rule", "form-rule")
    expect(row.locator("td").nth(4)).to_have_text("1")  # the list was read after the disable
    listed = requests.get(f"{fake.url}/__admin/faults", timeout=5).json()
    assert [(r["id"], r.get("enabled", True)) for r in listed["rules"]] == [
        ("form-rule", False),
        ("pasted", True),
    ]
    assert requests.get(f"{fake.url}/health", timeout=5).status_code == 200
    watched.shot("rule-disabled")
    row.get_by_role("button", name="Enable").click()
    expect(row).not_to_have_class("off", timeout=5000)
    expect(row.get_by_role("button", name="Disable")).to_be_visible()
    assert "enabled" not in requests.get(f"{fake.url}/__admin/faults/form-rule", timeout=5).json()
    assert requests.get(f"{fake.url}/health", timeout=5).status_code == 502
    stats = requests.get(f"{fake.url}/__admin/faults", timeout=5).json()["stats"]["form-rule"]
    assert stats == {"matched": 2, "fired": 2}
    page.locator("#presets").get_by_role("button", name="flaky").click()
    expect(page.locator('#rules-body tr[data-rule="flaky-503"]')).to_be_visible(timeout=5000)


def test_the_compliance_verdict_and_its_offending_requests(watched: Watched, fake: ServerThread) -> None:
    fault = {"type": "status", "status": 503, "retry_after": 5}
    rule = {"id": "busy", "match": {"path": "/health"}, "fault": fault}
    requests.post(f"{fake.url}/__admin/faults", json=rule, timeout=5)
    for _ in range(3):  # retried at once, ignoring Retry-After: 5
        headers = {"X-Mock-Session": "rude", "Idempotency-Key": "k1"}
        requests.get(f"{fake.url}/health", headers=headers, timeout=5)
    page = _open(watched, fake)
    page.click("#grade-refresh")
    expect(page.locator("#verdict")).to_have_text("fail", timeout=5000)
    finding = page.locator("#findings li", has_text="retry_before_retry_after")
    expect(finding).to_be_visible()
    report = requests.get(f"{fake.url}/__admin/compliance", timeout=5).json()
    expect(page.locator("#score")).to_have_text(f"{report['score']}%")
    finding.locator("a").first.click()
    expect(page.locator("#details")).to_be_visible(timeout=5000)
    expect(page.locator("#details-table")).to_contain_text("rude")
    expect(page.locator("#sessions-body tr", has_text="rude")).to_contain_text("fail", timeout=5000)
    watched.shot("compliance")


def test_the_page_asks_for_the_admin_token_and_keeps_it_out_of_urls(browser: Any) -> None:
    with ServerThread(ServerConfig(db=":memory:", admin_token="t0ken-xyz")) as server:
        w = Watched(browser)
        w.expected = {401}  # the calls before the token, and with the wrong one
        try:
            page = w.page
            page.goto(f"{server.url}/__admin/ui")
            dialog = page.locator("#token-dialog")
            expect(dialog).to_be_visible(timeout=5000)
            page.fill("#token-input", "wrong")
            page.click("#token-form button[type=submit]")
            expect(page.locator("#token-error")).to_contain_text("refused", timeout=5000)
            page.fill("#token-input", "t0ken-xyz")
            page.click("#token-form button[type=submit]")
            expect(dialog).to_be_hidden(timeout=5000)
            expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
            requests.get(f"{server.url}/health", timeout=5)
            expect(page.locator("#requests-body tr", has_text="/health")).to_have_count(1, timeout=5000)
            assert page.evaluate("sessionStorage.getItem('mock_server.admin_token')") == "t0ken-xyz"
            page.reload()  # same tab: the token is kept, no prompt
            expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
            expect(dialog).to_be_hidden()
            w.shot("token")
        finally:
            w.context.close()
        assert not any("t0ken" in url or "wrong" in url for url in w.urls)
        assert w.outside == []
        assert w.errors == []


def test_docs_render_both_documents_from_the_fake_alone(watched: Watched, fake: ServerThread) -> None:
    page = watched.page
    page.goto(f"{fake.url}/docs")
    expect(page.locator(".opblock-summary-path", has_text="/profiles").first).to_be_visible(timeout=10000)
    watched.shot("docs")
    page.click("#doc-admin")
    expect(page.locator(".opblock-summary-path", has_text="/__admin/events")).to_be_visible(timeout=10000)
    assert all(_local(url) for url in watched.urls)


def test_no_request_leaves_the_machine_and_nothing_is_logged(watched: Watched, fake: ServerThread) -> None:
    page = _open(watched, fake)
    page.click("#token-button")  # without a token to give, the dialog can be dismissed
    page.click("#token-cancel")
    expect(page.locator("#token-dialog")).to_be_hidden()
    requests.get(f"{fake.url}/health", timeout=5)
    expect(page.locator("#requests-body tr")).to_have_count(1, timeout=5000)
    page.wait_for_timeout(500)
    hosts = {urlsplit(u).netloc for u in watched.urls if not u.startswith("data:")}
    assert hosts == {urlsplit(fake.url).netloc}
    # (the fixture fails the test on any console error or any request that left the machine)
