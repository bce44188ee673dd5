"""Synchronous client for ``qt serve``, meant for a robot's control loop.

It imports no torch and no model code, so it installs on a robot computer with just ``websockets``,
``msgpack`` and ``numpy``. Acting is idempotent, so when the connection drops (server restart, network
blip) the client reconnects with exponential backoff and resends the request; a refused token or a
request the server rejects is raised at once instead, because retrying cannot fix it.
"""

from __future__ import annotations

import inspect
import itertools
import random
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from qtransformer.serving.protocol import ProtocolError, packb, unpackb

_LEGACY: dict[str, Any] = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
"""websockets >= 17 wants ``legacy=True`` for a connection that outlives a ``with`` block.

Typed ``Any``: the keyword exists only in some versions, so no overload of ``connect`` can be matched."""

OBSERVATION_KEYS = ("state", "image")
"""Keys of an environment observation that are sent; others (e.g. ``instruction``) are dropped."""


class ServerError(RuntimeError):
    """The server answered with an error reply; ``code`` says which kind (see ``protocol.py``)."""

    def __init__(self, code: str, message: str, request_id: Any = None):
        super().__init__(f"[{code}] {message}")
        self.code, self.message, self.request_id = code, message, request_id


class AuthError(PermissionError):
    """The server refused the token (HTTP 401); reconnecting will not help."""


def open_connection(url: str, token: str | None, timeout: float, max_size: int | None) -> ClientConnection:
    """A websocket to ``url`` presenting ``token`` (``Authorization: Bearer``): no compression (arrays
    barely compress) and no proxy. A 401 is an :class:`AuthError`, any other refusal a ConnectionError."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=1.0,
            max_size=max_size,
            compression=None,
            proxy=None,
            **_LEGACY,
        )
    except InvalidStatus as e:
        status = e.response.status_code
        body = e.response.body.decode(errors="replace").strip() if e.response.body else ""
        if status == 401:
            raise AuthError(f"{url} refused the connection (401): {body}") from None
        raise ConnectionError(f"{url} answered HTTP {status}: {body}") from e


class PolicyClient:
    """``act(observation, instruction) -> reply dict`` against a policy server, with reconnects."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 10.0,
        reconnect_attempts: int = 5,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
    ):
        """``timeout`` bounds the opening handshake and every reply; ``reconnect_attempts`` bounds how
        many times one call reconnects before giving up, waiting ``backoff_s`` doubled each time."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.url, self.token, self.timeout = url, token, timeout
        self.reconnect_attempts, self.backoff_s, self.max_backoff_s = (
            reconnect_attempts,
            backoff_s,
            max_backoff_s,
        )
        self.metadata: dict[str, Any] = {}
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._ids = itertools.count()
        self._connect()

    # ----- connection ------------------------------------------------------------------------------
    def _open(self) -> ClientConnection:
        ws = open_connection(self.url, self.token, self.timeout, max_size=None)  # the server bounds replies
        try:
            meta = unpackb(ws.recv(timeout=self.timeout))
        except BaseException:
            ws.close()
            raise
        if not isinstance(meta, dict) or meta.get("type") != "metadata":
            ws.close()
            raise ProtocolError("bad_message", f"{self.url} did not start with a metadata handshake")
        self.metadata = meta
        return ws

    def _connect(self) -> None:
        delay = self.backoff_s
        for attempt in range(self.reconnect_attempts + 1):
            try:
                self._ws = self._open()
                return
            except AuthError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as e:
                if attempt == self.reconnect_attempts:
                    raise ConnectionError(
                        f"could not connect to {self.url} after {attempt + 1} attempt(s): {e}"
                    ) from e
            time.sleep(delay * (0.5 + random.random()))  # jitter: robots restarting together spread out
            delay = min(delay * 2, self.max_backoff_s)

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass  # closing a broken socket can fail in many ways; it is gone either way
            self._ws = None

    def close(self) -> None:
        """Close the connection; a later call reconnects."""
        self._drop()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- calls -----------------------------------------------------------------------------------
    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one message and return its reply; raises :class:`ServerError` for error replies."""
        message.setdefault("request_id", next(self._ids))
        payload = packb(message)
        limit = self.metadata.get("limits", {}).get("max_message_bytes")
        if limit is not None and len(payload) > limit:
            raise ValueError(f"message of {len(payload)} bytes exceeds the server's limit of {limit}")
        for attempt in range(self.reconnect_attempts + 1):
            if self._ws is None:
                self._connect()
                self.reconnects += 1
            assert self._ws is not None
            try:
                self._ws.send(payload)
                raw = self._ws.recv(timeout=self.timeout)
            except TimeoutError:
                self._drop()  # a late reply would otherwise be read as the answer to the next request
                raise TimeoutError(f"no reply from {self.url} within {self.timeout} s") from None
            except (ConnectionClosed, OSError) as e:
                self._drop()
                if attempt == self.reconnect_attempts:
                    raise ConnectionError(f"lost the connection to {self.url}: {e}") from e
                continue
            if isinstance(raw, str):  # the server sends binary frames only
                raise ProtocolError("bad_message", "reply is a text frame, not msgpack bytes")
            reply = unpackb(raw)
            if not isinstance(reply, dict):
                raise ProtocolError("bad_message", f"reply is a {type(reply).__name__}, not a map")
            if "error" in reply:
                err = reply["error"]
                raise ServerError(str(err.get("code")), str(err.get("message")), reply.get("request_id"))
            return reply
        raise ConnectionError(f"lost the connection to {self.url}")  # unreachable: the loop raises

    def act(
        self,
        observation: Mapping[str, Any],
        instruction: str,
        return_q: bool = False,
        request_id: str | int | None = None,
    ) -> dict[str, Any]:
        """One action for one observation: the reply's ``action`` is a (D,) float32 array."""
        obs = {k: np.asarray(observation[k]) for k in OBSERVATION_KEYS if k in observation}
        if "state" in obs and obs["state"].dtype == np.float64:
            obs["state"] = obs["state"].astype(np.float32)  # half the bytes; the model reads float32
        message: dict[str, Any] = {"observation": obs, "instruction": instruction, "return_q": return_q}
        if request_id is not None:
            message["request_id"] = request_id
        return self.call(message)

    def reload(self, path: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Ask the server to load ``path`` (default: reload its current checkpoint); returns the new
        model info. Needs the server token (defaults to this client's)."""
        message: dict[str, Any] = {"admin": "reload", "token": token or self.token}
        if path is not None:
            message["path"] = path
        return self.call(message)["model"]
