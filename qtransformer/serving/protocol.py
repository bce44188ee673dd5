"""Wire format of the policy server: msgpack messages whose numpy arrays travel as tagged maps.

An array is encoded, like openpi's ``msgpack_numpy``, as the map
``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": <numpy dtype str>, b"shape": <list of ints>}``
so any msgpack library in any language can build one without a numpy extension type; a numpy scalar
sent by openpi's packer, ``{b"__npgeneric__": True, b"data": <number>, b"dtype": <str>}``, decodes to
that scalar. Decoding is
defensive because the bytes come from the network: object dtypes are refused (they would need pickle),
the shape must match the byte count, and every failure is a :class:`ProtocolError` carrying a stable
error ``code`` that the server sends back instead of crashing.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

# Error codes sent in ``{"error": {"code": ..., "message": ...}}`` replies.
BAD_MESSAGE = "bad_message"
"""The frame is not a msgpack map (malformed bytes, text frame, wrong top-level type)."""
BAD_REQUEST = "bad_request"
"""A field is missing or has the wrong type (instruction, request_id, return_q, admin command)."""
BAD_OBSERVATION = "bad_observation"
"""An observation array has the wrong shape or dtype, or holds NaN/inf."""
TOO_LARGE = "too_large"
"""The frame is larger than the server's ``max_message_bytes``."""
UNAUTHORIZED = "unauthorized"
"""An admin command without the right token."""
OVERLOADED = "overloaded"
"""The inference queue is full; retry later."""
NOT_READY = "not_ready"
"""No model is loaded yet."""
RELOAD_FAILED = "reload_failed"
"""The new checkpoint could not be loaded; the previous model keeps serving."""
INTERNAL = "internal"
"""An unexpected server-side failure; the message says what happened."""

_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: never object/str/void/complex


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``code`` is one of the error codes above."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot send an array of dtype {obj.dtype} (only bool, int and float)")
        arr = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode an object of type {type(obj).__name__}")


def _decode_scalar(obj: dict) -> Any:
    try:
        dtype = np.dtype(obj[b"dtype"])
        data = obj[b"data"]
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(BAD_MESSAGE, f"malformed numpy scalar: {e}") from e
    if dtype.kind not in _ALLOWED_KINDS:
        raise ProtocolError(BAD_MESSAGE, f"scalar dtype {dtype} is not allowed (only bool, int and float)")
    if not isinstance(data, (bool, int, float)):
        raise ProtocolError(BAD_MESSAGE, f"scalar 'data' must be a number, got {type(data).__name__}")
    try:
        return dtype.type(data)
    except (OverflowError, ValueError) as e:
        raise ProtocolError(BAD_MESSAGE, f"scalar {data!r} does not fit dtype {dtype}: {e}") from e


def _decode_array(obj: dict) -> Any:
    if b"__ndarray__" not in obj:
        if b"__npgeneric__" in obj:
            return _decode_scalar(obj)
        return obj
    try:
        dtype = np.dtype(obj[b"dtype"])
        shape = tuple(int(s) for s in obj[b"shape"])
        data = obj[b"data"]
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(BAD_MESSAGE, f"malformed array: {e}") from e
    if dtype.kind not in _ALLOWED_KINDS:
        raise ProtocolError(BAD_MESSAGE, f"array dtype {dtype} is not allowed (only bool, int and float)")
    if not isinstance(data, bytes):
        raise ProtocolError(BAD_MESSAGE, "array 'data' must be bytes")
    if any(s < 0 for s in shape) or len(shape) > 8:
        raise ProtocolError(BAD_MESSAGE, f"invalid array shape {shape}")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
        raise ProtocolError(
            BAD_MESSAGE,
            f"array of shape {shape} and dtype {dtype} needs "
            f"{int(np.prod(shape, dtype=np.int64)) * dtype.itemsize} bytes, got {len(data)}",
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def packb(obj: Any) -> bytes:
    """Encode a message (dicts, lists, str, numbers, numpy arrays and scalars) to msgpack bytes."""
    return msgpack.packb(obj, default=_encode_default, use_bin_type=True)


def unpackb(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode msgpack bytes; arrays come back as read-only numpy views. Raises :class:`ProtocolError`,
    also for a ``str`` (a websocket text frame, which never holds msgpack)."""
    if isinstance(data, str):
        raise ProtocolError(BAD_MESSAGE, "expected a binary frame holding msgpack, got a text frame")
    try:
        return msgpack.unpackb(data, object_hook=_decode_array, raw=False, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise ProtocolError(BAD_MESSAGE, f"not a valid msgpack message: {type(e).__name__}: {e}") from e


def error_reply(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    """The one shape of every error the server sends."""
    return {"error": {"code": code, "message": message}, "request_id": request_id}
