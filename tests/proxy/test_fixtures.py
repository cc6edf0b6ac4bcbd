"""The ``mock_proxy`` and ``mock_replay`` fixtures, as a user's tests use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from mock_server import ServerThread
from mock_server._proxy._app import FrontThread

pytestmark = pytest.mark.socket


@pytest.mark.mock_server(allow_fault_header=True)
@pytest.mark.mock_proxy(seed=3, allow_fault_header=True)
def test_mock_proxy_defaults_to_the_tests_fake(mock_proxy: FrontThread, mock_server: ServerThread) -> None:
    assert mock_proxy.config.upstream == mock_server.url  # type: ignore[union-attr]
    answer = requests.get(f"{mock_proxy.url}/health", timeout=5)
    assert answer.status_code == 200
    injected = requests.get(f"{mock_proxy.url}/health", headers={"X-Mock-Fault": "status=503"}, timeout=5)
    assert injected.status_code == 503
    # The 503 came from the proxy: the fake saw one request, the proxy two.
    assert mock_server.admin.count() == 1 and mock_proxy.admin.count() == 2


@pytest.mark.mock_replay(har="data/devtools.har", preset="flaky", seed=1)
def test_mock_replay_serves_a_file_next_to_the_test(mock_replay: FrontThread) -> None:
    assert Path(mock_replay.config.har).is_absolute()  # type: ignore[union-attr]
    statuses = {requests.get(f"{mock_replay.url}/v1/items?page=1", timeout=5).status_code for _ in range(20)}
    assert 200 in statuses and statuses - {200}  # the flaky preset's faults, in front of the recording
