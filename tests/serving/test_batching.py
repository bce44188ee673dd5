"""Answers under concurrent batched load equal the policy's answer to each request alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qtransformer.policy import QTransformerPolicy
from qtransformer.serving.client import PolicyClient
from tests.serving.conftest import TOKEN, RunningServer, serve_args

INSTRUCTIONS = ["pick up the red block", "open the drawer", "push the green cube left", "sort the bottle"]


def _hammer(url: str, n_clients: int, per_client: int, token: str | None = TOKEN) -> dict:
    """Each client sends its own observations; returns {(client, i): (state, instruction, reply)}."""
    results: dict = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_clients)

    def worker(c: int) -> None:
        try:
            rng = np.random.default_rng(c)
            with PolicyClient(url, token=token) as client:
                barrier.wait(10)
                for i in range(per_client):
                    state = rng.uniform(-1, 1, 8).astype(np.float32)
                    text = INSTRUCTIONS[(c + i) % len(INSTRUCTIONS)]
                    results[(c, i)] = (state, text, client.act({"state": state}, text, return_q=(i % 2 == 0)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_batched_answers_equal_single_requests(server, checkpoints, text_encoder):
    policy = QTransformerPolicy.from_checkpoint(checkpoints["a"], encoder=text_encoder)
    results = _hammer(server.url, n_clients=8, per_client=6)
    assert len(results) == 48
    sizes = [reply["batch_size"] for _, _, reply in results.values()]
    assert max(sizes) > 1, "concurrent clients should have shared batches"
    for state, text, reply in results.values():
        alone = policy.act({"state": state[None]}, [text], return_q=True)
        np.testing.assert_array_equal(reply["bins"], alone.bins[0])
        np.testing.assert_allclose(reply["action"], alone.actions[0], rtol=0, atol=1e-6)
        assert reply["action"].dtype == np.float32
        if "q_values" in reply:
            np.testing.assert_allclose(reply["q_values"], alone.q_values[0], atol=1e-5)
        timing = reply["timing"]
        assert timing["total_ms"] >= timing["infer_ms"] > 0 and timing["queue_ms"] >= 0


def test_return_q_is_per_request(server):
    results = _hammer(server.url, n_clients=4, per_client=4)
    for (_, i), (_, _, reply) in results.items():
        assert ("q_values" in reply) == (i % 2 == 0)
        if "q_values" in reply:
            assert reply["q_values"].shape == (3, 32)


@pytest.fixture(scope="module")
def unbatched(checkpoints, text_encoder):
    s = RunningServer(serve_args(checkpoints["a"], None, max_batch_size=1), text_encoder)
    yield s
    s.stop()


def test_max_batch_size_one_turns_batching_off(unbatched):
    results = _hammer(unbatched.url, n_clients=6, per_client=4, token=None)
    assert {reply["batch_size"] for _, _, reply in results.values()} == {1}
    _, metrics = unbatched.http_json("/metrics")  # no auth on this server
    assert metrics["batch_size_histogram"] == {"1": metrics["batches_total"]}
