"""The client: round trip, reconnect across a server restart, timeouts, and the robot loop."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from websockets.sync.server import serve as sync_serve

from qtransformer.policy import QTransformerPolicy
from qtransformer.serving.client import PolicyClient, ServerError
from qtransformer.serving.protocol import packb
from qtransformer.serving.robot_loop import run_env_with_server
from tests.serving.conftest import TOKEN, RunningServer, serve_args

STATE = np.linspace(-1, 1, 8, dtype=np.float32)


def test_round_trip_matches_the_policy(server, checkpoints, text_encoder):
    policy = QTransformerPolicy.from_checkpoint(checkpoints["a"], encoder=text_encoder)
    with PolicyClient(server.url, token=TOKEN, timeout=5) as client:
        meta = client.metadata
        assert meta["protocol_version"] == 1 and meta["num_bins"] == 32
        assert meta["observation"]["state"] == {"shape": [8], "dtype": "float32"}
        assert meta["action"]["shape"] == [3] and meta["action"]["low"] == [-1.0] * 3
        assert meta["model"]["path"] == str(checkpoints["a"]) and meta["model"]["step"] == 0
        assert meta["batching"]["max_batch_size"] == 16
        # an env observation may carry extra keys (the instruction): they are not sent
        reply = client.act({"state": STATE.astype(np.float64), "instruction": "ignored"}, "open the drawer")
        want = policy.act({"state": STATE[None]}, ["open the drawer"])
        np.testing.assert_allclose(reply["action"], want.actions[0], atol=1e-6)
        assert reply["action"].dtype == np.float32 and reply["batch_size"] >= 1
        assert client.act({"state": STATE}, "open the drawer", request_id="abc")["request_id"] == "abc"
        with pytest.raises(ServerError) as e:
            client.act({"state": STATE[:4]}, "open the drawer")
        assert e.value.code == "bad_observation"
        assert "action" in client.act({"state": STATE}, "open the drawer")  # still usable


def test_client_reconnects_after_a_server_restart(checkpoints, token_file, text_encoder):
    first = RunningServer(serve_args(checkpoints["a"], token_file), text_encoder)
    port = first.port
    client = PolicyClient(first.url, token=TOKEN, timeout=5, reconnect_attempts=8, backoff_s=0.05)
    before = client.act({"state": STATE}, "wipe the table")["action"]
    first.stop()
    holder: dict = {}

    def restart() -> None:
        time.sleep(0.5)  # the client retries against a closed port meanwhile
        holder["server"] = RunningServer(serve_args(checkpoints["a"], token_file, port=port), text_encoder)

    t = threading.Thread(target=restart)
    t.start()
    try:
        after = client.act({"state": STATE}, "wipe the table")["action"]
        t.join(30)
        np.testing.assert_array_equal(after, before)
        assert client.reconnects == 1
    finally:
        t.join(30)
        client.close()
        if "server" in holder:
            holder["server"].stop()


def test_connection_failure_is_reported_after_bounded_retries():
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="after 3 attempt"):
        PolicyClient("ws://127.0.0.1:9", reconnect_attempts=2, backoff_s=0.01)
    assert time.monotonic() - t0 < 5


def test_timeout_drops_the_connection_and_raises():
    meta = {"type": "metadata", "limits": {"max_message_bytes": 2**20}}

    def silent(ws) -> None:
        ws.send(packb(meta))
        for _ in ws:
            pass  # never answers

    with sync_serve(silent, "127.0.0.1", 0) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        client = PolicyClient(f"ws://127.0.0.1:{srv.socket.getsockname()[1]}", timeout=0.3)
        with pytest.raises(TimeoutError, match=r"within 0\.3 s"):
            client.act({"state": STATE}, "anything")
        assert client._ws is None  # a late reply can never be mistaken for the next answer
        client.close()
        srv.shutdown()


class FakeArm(gym.Env):
    """A 5-step env with the project's observation dict; records the actions it receives."""

    def __init__(self, action_dim: int = 3):
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-1, 1, (8,), np.float32), "instruction": gym.spaces.Text(64)}
        )
        self.action_space = gym.spaces.Box(-1, 1, (action_dim,), np.float32)
        self.actions: list[np.ndarray] = []
        self.t = 0

    def _obs(self) -> dict:
        return {"state": np.full(8, self.t / 10, np.float32), "instruction": "sort the garbage"}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.actions.append(np.asarray(action))
        self.t += 1
        return self._obs(), 1.0, self.t >= 5, False, {"success": self.t >= 5}


def test_run_env_with_server_drives_the_env(server, checkpoints, text_encoder):
    policy = QTransformerPolicy.from_checkpoint(checkpoints["a"], encoder=text_encoder)
    env = FakeArm()
    replies: list = []
    with PolicyClient(server.url, token=TOKEN) as client:
        results = run_env_with_server(env, client, episodes=2, on_step=lambda o, r: replies.append((o, r)))
    assert [r.length for r in results] == [5, 5] and all(r.success for r in results)
    assert results[0].episode_return == 5.0 and results[0].instruction == "sort the garbage"
    assert len(env.actions) == 10 and len(results[1].latency_ms) == 5
    for (obs, reply), action in zip(replies, env.actions):
        np.testing.assert_array_equal(action, reply["action"])
        want = policy.act({"state": obs["state"][None]}, ["sort the garbage"]).actions[0]
        np.testing.assert_allclose(action, want, atol=1e-6)


def test_run_env_with_server_refuses_a_mismatched_model(server):
    with PolicyClient(server.url, token=TOKEN) as client:
        with pytest.raises(ValueError, match=r"actions have shape \(3,\), the environment takes \(4,\)"):
            run_env_with_server(FakeArm(action_dim=4), client)
