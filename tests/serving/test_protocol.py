"""The msgpack-numpy wire format round-trips arrays and refuses what it cannot decode safely."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from qtransformer.serving.protocol import BAD_MESSAGE, ProtocolError, packb, unpackb


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "int64", "bool"])
def test_arrays_round_trip_with_dtype_and_shape(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    out = unpackb(packb({"x": arr, "nested": [arr[0], {"y": arr[1, 1]}]}))
    assert out["x"].dtype == arr.dtype and out["x"].shape == (2, 3, 4)
    np.testing.assert_array_equal(out["x"], arr)
    np.testing.assert_array_equal(out["nested"][1]["y"], arr[1, 1])


def test_non_contiguous_arrays_and_numpy_scalars_are_encoded():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    out = unpackb(packb({"a": arr, "s": np.float32(1.5), "i": np.int64(3)}))
    np.testing.assert_array_equal(out["a"], arr)
    assert out["s"] == 1.5 and out["i"] == 3


def test_the_wire_layout_is_the_openpi_convention():
    raw = msgpack.unpackb(packb(np.zeros((2, 3), np.float32)), raw=False)
    assert raw[b"__ndarray__"] is True
    assert raw[b"dtype"] == "<f4" and list(raw[b"shape"]) == [2, 3] and len(raw[b"data"]) == 24


def _array_map(data: bytes, dtype: str, shape: list[int]) -> bytes:
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape})


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xc1\xff\x00", "not a valid msgpack"),
        (b"\x92\x01", "not a valid msgpack"),  # truncated array
        (_array_map(b"\x00" * 8, "|O", [1]), "not allowed"),
        (_array_map(b"\x00" * 7, "<f4", [2]), "needs 8 bytes"),
        (_array_map(b"", "<f4", [-1]), "invalid array shape"),
        (_array_map(b"\x00" * 4, "not-a-dtype", [1]), "malformed array"),
    ],
)
def test_malformed_input_raises_protocol_error(payload, fragment):
    with pytest.raises(ProtocolError) as e:
        unpackb(payload)
    assert e.value.code == BAD_MESSAGE and fragment in e.value.message


def test_object_arrays_cannot_be_sent():
    with pytest.raises(TypeError, match="dtype object"):
        packb(np.array([object()]))
