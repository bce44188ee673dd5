"""Every kind of bad input gets an error reply naming the problem, and the connection stays usable."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from qtransformer.serving.protocol import packb, unpackb
from tests.serving.conftest import TOKEN, RunningServer, serve_args

GOOD_STATE = np.linspace(-1, 1, 8, dtype=np.float32)


def _good(**over):
    msg = {"observation": {"state": GOOD_STATE}, "instruction": "pick up the red block", "request_id": "ok"}
    msg.update(over)
    return msg


@pytest.fixture(scope="module")
def ws(server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    conn = connect(server.url, additional_headers=auth, compression=None, legacy=True)
    meta = unpackb(conn.recv(timeout=10))
    assert meta["type"] == "metadata"
    yield conn
    conn.close()


def _roundtrip(ws, frame):
    ws.send(frame)
    return unpackb(ws.recv(timeout=10))


def _assert_usable(ws):
    reply = _roundtrip(ws, packb(_good()))
    assert "error" not in reply, reply
    assert reply["request_id"] == "ok" and reply["action"].shape == (3,)


BAD = {
    "malformed msgpack": (b"\xc1\xc1\xc1", "bad_message", "not a valid msgpack"),
    "truncated msgpack": (packb(_good())[:-5], "bad_message", "not a valid msgpack"),
    "text frame": ("hello", "bad_message", "text frame"),
    "non-map": (packb([1, 2, 3]), "bad_message", "must be a map"),
    "missing observation": (packb({"instruction": "x", "request_id": 7}), "bad_request", "'observation'"),
    "missing instruction": (packb({"observation": {"state": GOOD_STATE}}), "bad_request", "'instruction'"),
    "missing state": (packb(_good(observation={})), "bad_observation", "missing 'state'"),
    "unknown field": (packb(_good(obs=1)), "bad_request", "unknown field"),
    "observation not a map": (packb(_good(observation=[1.0])), "bad_request", "'observation' must be a map"),
    "wrong shape": (
        packb(_good(observation={"state": np.zeros(5, np.float32)})),
        "bad_observation",
        "shape (8,)",
    ),
    "batched shape": (
        packb(_good(observation={"state": np.zeros((2, 8), np.float32)})),
        "bad_observation",
        "shape (8,)",
    ),
    "wrong dtype": (
        packb(_good(observation={"state": np.zeros(8, np.bool_)})),
        "bad_observation",
        "dtype bool",
    ),
    "string state": (packb(_good(observation={"state": "12345678"})), "bad_observation", "got str"),
    "nan": (
        packb(_good(observation={"state": np.array([np.nan] + [0.0] * 7, np.float32)})),
        "bad_observation",
        "NaN or inf",
    ),
    "inf": (
        packb(_good(observation={"state": np.array([np.inf] + [0.0] * 7)})),
        "bad_observation",
        "NaN or inf",
    ),
    "float64 overflow": (
        packb(_good(observation={"state": np.array([1e300] + [0.0] * 7)})),
        "bad_observation",
        "NaN or inf",
    ),
    "over-long instruction": (packb(_good(instruction="x" * 513)), "bad_request", "limit is 512"),
    "empty instruction": (packb(_good(instruction="  ")), "bad_request", "empty"),
    "instruction not a string": (packb(_good(instruction=5)), "bad_request", "must be a string"),
    "return_q not a bool": (packb(_good(return_q="yes")), "bad_request", "'return_q' must be a bool"),
    "request_id a list": (packb(_good(request_id=[1])), "bad_request", "'request_id'"),
    "bytes/shape mismatch": (
        msgpack.packb(
            {
                "observation": {
                    "state": {b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "<f4", b"shape": [8]}
                },
                "instruction": "x",
            }
        ),
        "bad_message",
        "needs 32 bytes",
    ),
    "object dtype": (
        msgpack.packb({"x": {b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}}),
        "bad_message",
        "not allowed",
    ),
    "unknown admin command": (packb({"admin": "shutdown"}), "bad_request", "unknown admin command"),
    "admin reload without token": (packb({"admin": "reload"}), "unauthorized", "token"),
    "oversize message": (
        packb(_good(observation={"state": np.zeros(2**20 // 4 + 16, np.float32)})),
        "too_large",
        "max_message_bytes",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gets_an_error_and_the_connection_survives(ws, name):
    frame, code, fragment = BAD[name]
    reply = _roundtrip(ws, frame)
    assert reply["error"]["code"] == code, reply
    assert fragment in reply["error"]["message"], reply
    _assert_usable(ws)


def test_error_replies_echo_the_request_id(ws):
    reply = _roundtrip(ws, packb(_good(request_id="r-42", instruction="")))
    assert reply["request_id"] == "r-42" and reply["error"]["code"] == "bad_request"


def test_errors_are_counted_in_metrics(server, ws):
    before = server.http_json("/metrics", TOKEN)[1]["errors_by_code"].get("bad_observation", 0)
    _roundtrip(ws, packb(_good(observation={"state": np.zeros(3, np.float32)})))
    after = server.http_json("/metrics", TOKEN)[1]["errors_by_code"]["bad_observation"]
    assert after == before + 1


def test_frames_beyond_the_transport_limit_close_only_that_connection(server, ws):
    """Beyond 4x max_message_bytes websockets itself closes the socket (1009); the server lives on."""
    big = connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, legacy=True)
    big.recv(timeout=10)
    big.send(b"\x00" * (4 * 2**20 + 1024))
    with pytest.raises(ConnectionClosed) as e:
        big.recv(timeout=10)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    _assert_usable(ws)


@pytest.fixture(scope="module")
def image_server(checkpoints, text_encoder):
    s = RunningServer(serve_args(checkpoints["image"], None), text_encoder)
    yield s
    s.stop()


def test_image_inputs_are_checked(image_server):
    with connect(image_server.url, compression=None) as conn:
        meta = unpackb(conn.recv(timeout=10))
        assert meta["observation"]["image"] == {"shape": [2, 16, 16, 3], "dtype": "uint8"}
        img = np.zeros((2, 16, 16, 3), np.uint8)
        cases = [
            ({"state": GOOD_STATE}, "missing 'image'"),
            ({"state": GOOD_STATE, "image": img.astype(np.float32)}, "must be uint8"),
            ({"state": GOOD_STATE, "image": img[:1]}, "shape (2, 16, 16, 3)"),
        ]
        for obs, fragment in cases:
            reply = _roundtrip(conn, packb(_good(observation=obs)))
            assert reply["error"]["code"] == "bad_observation" and fragment in reply["error"]["message"]
        reply = _roundtrip(conn, packb(_good(observation={"state": GOOD_STATE, "image": img})))
        assert "error" not in reply and reply["action"].dtype == np.float32


def test_max_message_bytes_is_configurable(checkpoints, text_encoder):
    s = RunningServer(serve_args(checkpoints["a"], None, max_message_bytes=4096), text_encoder)
    try:
        with connect(s.url, compression=None) as conn:
            meta = unpackb(conn.recv(timeout=10))
            assert meta["limits"]["max_message_bytes"] == 4096
            reply = _roundtrip(
                conn, packb(_good(instruction="y" * 500, request_id="z" * 100)) + b"\x00" * 5000
            )
            assert reply["error"]["code"] == "too_large"
            _assert_usable(conn)
    finally:
        s.stop()
