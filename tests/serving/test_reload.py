"""Reloading swaps the weights under live connections; a bad checkpoint keeps the old model serving."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from qtransformer.checkpoint import CheckpointError
from qtransformer.policy import QTransformerPolicy
from qtransformer.serving.client import PolicyClient, ServerError
from tests.serving.conftest import TOKEN, RunningServer, make_checkpoint, serve_args

STATE = np.linspace(-0.5, 0.5, 8, dtype=np.float32)
TEXT = "put the can in the bin"


@pytest.fixture()
def reloadable(checkpoints, token_file, text_encoder):
    s = RunningServer(serve_args(checkpoints["a"], token_file), text_encoder)
    yield s
    s.stop()


def _q(client: PolicyClient) -> np.ndarray:
    return client.act({"state": STATE}, TEXT, return_q=True)["q_values"]


def test_admin_reload_serves_new_weights_on_the_same_connection(reloadable, checkpoints, text_encoder):
    pol_a = QTransformerPolicy.from_checkpoint(checkpoints["a"], encoder=text_encoder)
    pol_b = QTransformerPolicy.from_checkpoint(checkpoints["b"], encoder=text_encoder)
    q_a = pol_a.act({"state": STATE[None]}, [TEXT], return_q=True).q_values[0]
    q_b = pol_b.act({"state": STATE[None]}, [TEXT], return_q=True).q_values[0]
    assert not np.allclose(q_a, q_b)

    with PolicyClient(reloadable.url, token=TOKEN) as client:
        other = PolicyClient(reloadable.url, token=TOKEN)
        old_version = client.metadata["model"]["version"]
        np.testing.assert_allclose(_q(client), q_a, atol=1e-5)
        ws_before = client._ws
        info = client.reload(str(checkpoints["b"]))
        assert info["path"] == str(checkpoints["b"]) and info["step"] == 1 and info["version"] != old_version
        reply = client.act({"state": STATE}, TEXT, return_q=True)
        np.testing.assert_allclose(reply["q_values"], q_b, atol=1e-5)
        assert reply["model_version"] == info["version"]
        assert client._ws is ws_before and client.reconnects == 0  # no connection was dropped
        np.testing.assert_allclose(_q(other), q_b, atol=1e-5)  # the other connection too
        assert other.reconnects == 0
        other.close()
    assert reloadable.http_json("/readyz")[1]["model"]["version"] == info["version"]


def test_a_bad_checkpoint_keeps_the_old_model(reloadable, checkpoints, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints["b"], broken)
    with open(broken / "model.safetensors", "r+b") as f:
        f.truncate(100)
    with PolicyClient(reloadable.url, token=TOKEN) as client:
        q_before = _q(client)
        for path, fragment in [(broken, "SHA-256"), (tmp_path / "missing", "does not exist")]:
            with pytest.raises(ServerError) as e:
                client.reload(str(path))
            assert e.value.code == "reload_failed" and fragment in e.value.message
            assert "still serving version" in e.value.message
            np.testing.assert_array_equal(_q(client), q_before)
    _, metrics = reloadable.http_json("/metrics", TOKEN)
    assert metrics["reload_failures_total"] == 2 and metrics["reloads_total"] == 0


def test_admin_reload_needs_the_token(reloadable):
    with PolicyClient(reloadable.url, token=TOKEN) as client:
        with pytest.raises(ServerError) as e:
            client.reload(token="not-the-token-0123456789")
        assert e.value.code == "unauthorized"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readyz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _wait(pred, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_sighup_reloads_the_checkpoint_in_place(tmp_path):
    ckpt = make_checkpoint(tmp_path / "live", seed=3)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "qtransformer.serving.server",
        "--checkpoint",
        str(ckpt),
        "--port",
        str(port),
        "--no-auth",
        "--torch-threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        first = _wait(lambda: (r := _readyz(port)) and r["ready"] and r, 40)
        client = PolicyClient(f"ws://127.0.0.1:{port}")
        make_checkpoint(ckpt, seed=4)  # written atomically over the served directory
        proc.send_signal(signal.SIGHUP)
        second = _wait(
            lambda: (r := _readyz(port)) and r["model"]["version"] != first["model"]["version"] and r, 20
        )
        assert second["model"]["step"] == 4
        assert client.act({"state": STATE}, TEXT)["model_version"] == second["model"]["version"]
        assert client.reconnects == 0
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_a_missing_checkpoint_fails_at_startup_with_its_path(tmp_path, text_encoder):
    with pytest.raises(CheckpointError, match="nope' does not exist"):
        RunningServer(serve_args(tmp_path / "nope", None), text_encoder)
