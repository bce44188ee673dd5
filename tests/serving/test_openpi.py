"""openpi-client's conventions against ``qt serve``: its ``Api-Key`` header, its numpy scalars, its flat
observation dict with a ``prompt``, its action chunk in the reply and its text-frame errors.

``test_openpi_client_gets_actions`` drives the real ``openpi_client.WebsocketClientPolicy`` when the
package is importable (CI installs it without its ``numpy<2`` pin, see ``.ci/run``); the other tests
speak the same conventions byte for byte without it, so they run everywhere.
"""

from __future__ import annotations

import functools

import msgpack
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from qtransformer.policy import QTransformerPolicy
from qtransformer.serving.auth import bearer_ok
from qtransformer.serving.client import PolicyClient
from qtransformer.serving.protocol import ProtocolError, packb, unpackb
from tests.serving.conftest import TOKEN, RunningServer, serve_args

STATE = np.linspace(-1, 1, 8, dtype=np.float32)
PROMPT = "put the bottle in the recycling bin"


def _openpi_default(obj):
    """openpi_client.msgpack_numpy.pack_array: arrays and numpy scalars as tagged maps."""
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


openpi_packb = functools.partial(msgpack.packb, default=_openpi_default)


def _openpi_connect(url: str, api_key: str | None):
    """What ``WebsocketClientPolicy._wait_for_server`` does: its header, no compression, no size cap."""
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    conn = connect(url, compression=None, max_size=None, additional_headers=headers, legacy=True)
    return conn, unpackb(conn.recv(timeout=10))


def test_the_api_key_scheme_is_accepted_like_bearer():
    assert bearer_ok(f"Api-Key {TOKEN}", TOKEN) and bearer_ok(f"api-key {TOKEN}", TOKEN)
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN)
    assert not bearer_ok("Api-Key wrong-token-0123456789", TOKEN)
    assert not bearer_ok(f"Basic {TOKEN}", TOKEN) and not bearer_ok(TOKEN, TOKEN)


def test_numpy_scalars_decode_and_bad_ones_are_refused():
    out = unpackb(openpi_packb({"a": np.float32(0.5), "b": np.int64(-3), "c": np.bool_(True)}))
    assert out == {"a": 0.5, "b": -3, "c": True}
    assert out["a"].dtype == np.float32 and out["b"].dtype == np.int64 and out["c"].dtype == np.bool_
    for bad in (
        {b"__npgeneric__": True, b"data": 1, b"dtype": "|O"},  # object dtype would need pickle
        {b"__npgeneric__": True, b"data": b"xx", b"dtype": "<f4"},
        {b"__npgeneric__": True, b"data": 300, b"dtype": "|i1"},
        {b"__npgeneric__": True, b"dtype": "<f4"},
    ):
        with pytest.raises(ProtocolError) as e:
            unpackb(msgpack.packb({"x": bad}))
        assert e.value.code == "bad_message"


def test_an_openpi_style_request_gets_the_same_action_as_ours(server):
    conn, meta = _openpi_connect(server.url, TOKEN)
    with conn, PolicyClient(server.url, token=TOKEN, timeout=5) as ours:
        assert meta["type"] == "metadata"
        want = ours.act({"state": STATE}, PROMPT)["action"]
        for state_key in ("observation/state", "state"):
            # numpy scalars and keys the model does not read travel along, as in openpi's examples
            obs = {state_key: STATE, "prompt": PROMPT, "observation/gripper": np.float32(0.1)}
            conn.send(openpi_packb(obs))
            reply = conn.recv(timeout=10)
            assert isinstance(reply, bytes), reply
            out = unpackb(reply)
            assert out["actions"].shape == (1, 3) and out["actions"].dtype == np.float32
            np.testing.assert_array_equal(out["actions"][0], want)
            np.testing.assert_array_equal(out["action"], want)


def test_openpi_style_errors_are_text_frames_and_the_connection_stays_open(server):
    conn, _ = _openpi_connect(server.url, TOKEN)
    with conn:
        for obs, words in (
            ({"observation/state": STATE[:4], "prompt": PROMPT}, "'state' must have shape (8,)"),
            ({"prompt": PROMPT}, "missing the state"),
            ({"state": STATE, "prompt": ""}, "'prompt' is empty"),
            ({"state": STATE, "prompt": 3}, "'prompt' must be a string"),
        ):
            conn.send(openpi_packb(obs))
            reply = conn.recv(timeout=10)
            assert isinstance(reply, str) and words in reply, reply  # openpi's client raises on a str
        conn.send(openpi_packb({"state": STATE, "prompt": PROMPT}))
        assert unpackb(conn.recv(timeout=10))["actions"].shape == (1, 3)
        # our own layout on the same connection still gets error maps
        conn.send(packb({"observation": {"state": STATE[:4]}, "instruction": PROMPT}))
        assert unpackb(conn.recv(timeout=10))["error"]["code"] == "bad_observation"


def test_openpi_connections_without_the_right_key_are_refused(server):
    for key in (None, "wrong-token-0123456789"):
        with pytest.raises(InvalidStatus) as e:
            _openpi_connect(server.url, key)
        assert e.value.response.status_code == 401


@pytest.fixture(scope="module")
def image_server(checkpoints, token_file, text_encoder):
    s = RunningServer(serve_args(checkpoints["image"], token_file), text_encoder)
    yield s
    s.stop()


def test_openpi_cameras_as_one_array_or_a_map_of_names(image_server, checkpoints, text_encoder):
    policy = QTransformerPolicy.from_checkpoint(checkpoints["image"], encoder=text_encoder)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    want = policy.act({"state": STATE[None], "image": img[None]}, [PROMPT]).actions[0]
    conn, _ = _openpi_connect(image_server.url, TOKEN)
    with conn:
        for obs in (
            {"observation/state": STATE, "observation/image": img, "prompt": PROMPT},
            # a map of cameras is stacked in the order of their names
            {"state": STATE, "images": {"wrist": img[1], "base": img[0]}, "prompt": PROMPT},
        ):
            conn.send(openpi_packb(obs))
            np.testing.assert_allclose(unpackb(conn.recv(timeout=10))["actions"][0], want, atol=1e-6)
        conn.send(openpi_packb({"state": STATE, "images": {"base": img[0]}, "prompt": PROMPT}))
        assert "has 1 camera(s), this model reads 2" in conn.recv(timeout=10)
        conn.send(openpi_packb({"state": STATE, "prompt": PROMPT}))
        assert "this model reads images" in conn.recv(timeout=10)


def test_openpi_client_gets_actions(server):
    """The real openpi-client 0.1.x, unchanged: its auth header, flat dict and ``prompt``."""
    websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=TOKEN)
    assert client.get_server_metadata()["server"] == "qtransformer"
    with PolicyClient(server.url, token=TOKEN, timeout=5) as ours:
        want = ours.act({"state": STATE}, PROMPT)["action"]
    out = client.infer({"observation/state": STATE, "prompt": PROMPT})
    np.testing.assert_array_equal(out["actions"], want[None])
    with pytest.raises(RuntimeError, match="bad_observation"):
        client.infer({"observation/state": STATE[:2], "prompt": PROMPT})
