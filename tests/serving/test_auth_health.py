"""Token checks on connect, HTTP health/readiness/metrics on the websocket port, unsafe setups refused."""

from __future__ import annotations

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from qtransformer.serving.auth import AuthConfigError, bearer_ok, is_loopback, resolve_auth
from qtransformer.serving.client import AuthError, PolicyClient
from tests.serving.conftest import TOKEN


@pytest.mark.parametrize(
    "headers", [None, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}]
)
def test_connections_without_the_right_token_are_refused_with_401(server, headers):
    with pytest.raises(InvalidStatus) as e:
        connect(server.url, additional_headers=headers, legacy=True)
    assert e.value.response.status_code == 401
    assert b"Authorization: Bearer" in e.value.response.body


def test_client_reports_a_refused_token_without_retrying(server):
    with pytest.raises(AuthError, match="401"):
        PolicyClient(server.url, token="wrong-token-0123456789", reconnect_attempts=3)


def test_health_is_open_and_metrics_need_the_token(server):
    assert server.http_json("/healthz") == (200, {"status": "ok"})
    status, ready = server.http_json("/readyz")
    assert status == 200 and ready["ready"] is True and len(ready["model"]["weights_sha256"]) == 64
    assert server.http("/metrics")[0] == 401
    assert server.http("/metrics", "wrong-token-0123456789")[0] == 401


def test_metrics_count_requests_latency_and_batches(server):
    before = server.http_json("/metrics", TOKEN)[1]
    with PolicyClient(server.url, token=TOKEN) as client:
        for i in range(5):
            client.act({"state": np.full(8, i / 10, np.float32)}, "stack the cubes")
    status, after = server.http_json("/metrics", TOKEN)
    assert status == 200
    assert after["requests_total"] == before["requests_total"] + 5
    assert after["batches_total"] >= before["batches_total"] + 5
    assert after["latency_ms"]["p50"] > 0 and after["latency_ms"]["p99"] >= after["latency_ms"]["p50"]
    assert (
        after["batch_size_mean"] >= 1.0
        and sum(after["batch_size_histogram"].values()) == after["batches_total"]
    )
    text = server.http("/metrics?format=prometheus", TOKEN)[1]
    assert f"qt_requests_total {after['requests_total']}" in text
    assert 'qt_latency_ms{quantile="0.99"}' in text and "qt_batch_size_count" in text


def test_refused_connections_are_counted(server):
    before = server.http_json("/metrics", TOKEN)[1]["auth_failures_total"]
    with pytest.raises(InvalidStatus):
        connect(server.url, legacy=True)
    assert server.http_json("/metrics", TOKEN)[1]["auth_failures_total"] == before + 1


def test_no_auth_is_refused_on_a_public_address_unless_forced(tmp_path, monkeypatch):
    monkeypatch.delenv("QT_SERVE_TOKEN", raising=False)
    with pytest.raises(AuthConfigError, match=r"refusing --no-auth on '0\.0\.0\.0'"):
        resolve_auth("0.0.0.0", no_auth=True, force_no_auth=False)
    assert resolve_auth("0.0.0.0", no_auth=True, force_no_auth=True) is None
    assert resolve_auth("127.0.0.1", no_auth=True, force_no_auth=False) is None
    with pytest.raises(AuthConfigError, match="QT_SERVE_TOKEN"):
        resolve_auth("127.0.0.1", no_auth=False, force_no_auth=False)
    monkeypatch.setenv("QT_SERVE_TOKEN", "short")
    with pytest.raises(AuthConfigError, match="at least 16"):
        resolve_auth("127.0.0.1", no_auth=False, force_no_auth=False)
    monkeypatch.setenv("QT_SERVE_TOKEN", TOKEN)
    assert resolve_auth("10.0.0.5", no_auth=False, force_no_auth=False) == TOKEN
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(AuthConfigError, match="is empty"):
        resolve_auth("127.0.0.1", no_auth=False, force_no_auth=False, token_file=empty)


def test_loopback_detection_and_bearer_parsing():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.2")
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN) and bearer_ok(f"bearer  {TOKEN} ", TOKEN)
    assert (
        not bearer_ok(TOKEN, TOKEN) and not bearer_ok(f"Basic {TOKEN}", TOKEN) and not bearer_ok(None, TOKEN)
    )
