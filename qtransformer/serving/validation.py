"""Checks one decoded act request against the served model's spec, before it joins a batch.

Validating each request on its own is what keeps a single bad client from failing everyone it shares
a batch with: by the time a request reaches the inference thread its arrays have the exact shape and
dtype the model reads, and every rejection names the field and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qtransformer.serving.protocol import BAD_OBSERVATION, BAD_REQUEST, ProtocolError

REQUEST_FIELDS = frozenset({"observation", "instruction", "request_id", "return_q"})
MAX_REQUEST_ID_CHARS = 128
OPENPI_STATE_KEYS = ("observation/state", "state")
"""Where an openpi-style request keeps the state vector, in the order they are looked up."""
OPENPI_IMAGE_KEYS = ("observation/image", "image", "images")
"""Where an openpi-style request keeps the camera images; ``images`` may be a map camera -> (H, W, 3)."""


@dataclass
class ActRequest:
    """One validated request, ready to be stacked with others."""

    state: np.ndarray
    """(S,) float32 state vector."""
    image: np.ndarray | None
    """(V, H, W, 3) uint8 camera images, or None for a state-only model."""
    instruction: str
    """Language instruction, non-empty and within the model's character limit."""
    request_id: Any
    """Echoed back in the reply so clients can match answers to questions."""
    return_q: bool
    """Whether the reply should carry the (D, K) Q-values."""
    openpi: bool = False
    """The request came in openpi's flat layout: the reply also carries ``actions`` (1, D), and errors
    go back as text frames, which openpi's client raises as an error."""


def is_openpi_request(msg: Mapping[str, Any]) -> bool:
    """True for openpi's flat layout: a ``prompt`` and no ``observation`` map."""
    return "prompt" in msg and "observation" not in msg


def request_id_of(msg: Mapping[str, Any]) -> Any:
    """The request id if it is a usable one (str or int), else None, so even an error can echo it."""
    rid = msg.get("request_id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return None
    if isinstance(rid, str) and len(rid) > MAX_REQUEST_ID_CHARS:
        return None
    return rid


def _array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError as e:
            raise ProtocolError(BAD_OBSERVATION, f"{name!r} is a ragged list: {e}") from e
        if arr.dtype.kind not in "iuf":
            raise ProtocolError(BAD_OBSERVATION, f"{name!r} must hold numbers, got a list of {arr.dtype}")
        return arr
    raise ProtocolError(
        BAD_OBSERVATION, f"{name!r} must be a numpy array or a list of numbers, got {type(value).__name__}"
    )


def _state(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = _array(value, "state")
    if arr.dtype.kind not in "iuf":
        raise ProtocolError(BAD_OBSERVATION, f"'state' must be a float array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ProtocolError(BAD_OBSERVATION, f"'state' must have shape {shape}, got {arr.shape}")
    with np.errstate(over="ignore"):  # 1e300 becomes inf here and is rejected just below
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ProtocolError(BAD_OBSERVATION, "'state' contains NaN or inf (or values beyond float32 range)")
    return arr


def _image(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = _array(value, "image")
    if arr.dtype != np.uint8:
        raise ProtocolError(BAD_OBSERVATION, f"'image' must be uint8, got dtype {arr.dtype}")
    if shape[0] == 1 and arr.shape == shape[1:]:
        arr = arr[None]  # one camera: (H, W, 3) is accepted for (1, H, W, 3)
    if arr.shape != shape:
        raise ProtocolError(BAD_OBSERVATION, f"'image' must have shape {shape}, got {arr.shape}")
    return arr


def _instruction(value: Any, field: str, spec: Mapping[str, Any]) -> str:
    if value is None:
        raise ProtocolError(BAD_REQUEST, f"missing field {field!r}")
    if not isinstance(value, str):
        raise ProtocolError(BAD_REQUEST, f"{field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ProtocolError(BAD_REQUEST, f"{field!r} is empty")
    limit = int(spec["max_instruction_chars"])
    if len(value) > limit:
        raise ProtocolError(BAD_REQUEST, f"{field!r} has {len(value)} characters, the limit is {limit}")
    return value


def _openpi_images(msg: Mapping[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    key = next((k for k in OPENPI_IMAGE_KEYS if k in msg), None)
    if key is None:
        raise ProtocolError(
            BAD_OBSERVATION, f"this model reads images: send one of {list(OPENPI_IMAGE_KEYS)}"
        )
    value = msg[key]
    if isinstance(value, Mapping):  # {camera name: (H, W, 3)}, stacked in the order of the names
        if len(value) != shape[0]:
            raise ProtocolError(
                BAD_OBSERVATION, f"{key!r} has {len(value)} camera(s), this model reads {shape[0]}"
            )
        views = [_image(value[name], (1, *shape[1:]))[0] for name in sorted(value, key=str)]
        return np.stack(views)
    return _image(value, shape)


def parse_openpi_request(msg: Mapping[str, Any], spec: Mapping[str, Any]) -> ActRequest:
    """openpi's flat observation dict: ``prompt``, the state under ``observation/state`` or ``state``,
    images under ``observation/image``, ``image`` or ``images``. Other keys (more cameras, joint
    readings an openpi policy would read) are ignored, as extra keys of ``observation`` are."""
    instruction = _instruction(msg.get("prompt"), "prompt", spec)
    obs_spec = spec["observation"]
    key = next((k for k in OPENPI_STATE_KEYS if k in msg), None)
    if key is None:
        raise ProtocolError(BAD_OBSERVATION, f"missing the state: send one of {list(OPENPI_STATE_KEYS)}")
    state = _state(msg[key], tuple(obs_spec["state"]["shape"]))
    image = _openpi_images(msg, tuple(obs_spec["image"]["shape"])) if "image" in obs_spec else None
    return ActRequest(state, image, instruction, request_id_of(msg), False, openpi=True)


def parse_act_request(msg: Mapping[str, Any], spec: Mapping[str, Any]) -> ActRequest:
    """Validate ``msg`` (a decoded map) against ``spec`` (``QTransformerPolicy.spec``); a request in
    openpi's flat layout (:func:`is_openpi_request`) goes to :func:`parse_openpi_request`."""
    if is_openpi_request(msg):
        return parse_openpi_request(msg, spec)
    unknown = sorted(str(k) for k in msg if k not in REQUEST_FIELDS)
    if unknown:
        raise ProtocolError(
            BAD_REQUEST, f"unknown field(s) {unknown}; a request has {sorted(REQUEST_FIELDS)}"
        )
    rid = msg.get("request_id")
    if rid is not None and request_id_of(msg) is None:
        raise ProtocolError(
            BAD_REQUEST, f"'request_id' must be a string of at most {MAX_REQUEST_ID_CHARS} chars or an int"
        )
    return_q = msg.get("return_q", False)
    if not isinstance(return_q, bool):
        raise ProtocolError(BAD_REQUEST, f"'return_q' must be a bool, got {type(return_q).__name__}")

    instruction = _instruction(msg.get("instruction"), "instruction", spec)

    obs = msg.get("observation")
    if obs is None:
        raise ProtocolError(BAD_REQUEST, "missing field 'observation'")
    if not isinstance(obs, Mapping):
        raise ProtocolError(BAD_REQUEST, f"'observation' must be a map, got {type(obs).__name__}")
    obs_spec = spec["observation"]
    if "state" not in obs:
        raise ProtocolError(BAD_OBSERVATION, "observation is missing 'state'")
    state = _state(obs["state"], tuple(obs_spec["state"]["shape"]))
    image = None
    if "image" in obs_spec:
        if "image" not in obs:
            raise ProtocolError(BAD_OBSERVATION, "observation is missing 'image' (this model reads images)")
        image = _image(obs["image"], tuple(obs_spec["image"]["shape"]))
    return ActRequest(state, image, instruction, rid, return_q)
