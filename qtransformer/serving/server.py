"""``qt serve``: the policy behind a websocket, batching requests from every connected robot.

One process, one port. Websocket connections get a metadata handshake and then exchange msgpack
request/reply pairs (see ``docs/serving.md``); plain HTTP GETs on the same port answer ``/healthz``,
``/readyz`` and ``/metrics`` through websockets' ``process_request`` hook. The model runs in one
inference thread fed by :class:`DynamicBatcher`; the event loop only decodes, validates and replies, so
a slow batch never stalls a handshake or a health probe. Nothing here trains: the only model code
imported is the inference policy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import torch
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from qtransformer.checkpoint import CheckpointError
from qtransformer.serving.auth import (
    DEFAULT_TOKEN_ENV,
    AuthConfigError,
    bearer_ok,
    is_loopback,
    resolve_auth,
    token_ok,
)
from qtransformer.serving.batcher import DynamicBatcher, QueueFullError
from qtransformer.serving.metrics import ServerMetrics
from qtransformer.serving.model_store import ModelStore, Served
from qtransformer.serving.protocol import (
    BAD_MESSAGE,
    BAD_OBSERVATION,
    BAD_REQUEST,
    INTERNAL,
    NOT_READY,
    OVERLOADED,
    PROTOCOL_VERSION,
    RELOAD_FAILED,
    TOO_LARGE,
    UNAUTHORIZED,
    ProtocolError,
    error_reply,
    packb,
    unpackb,
)
from qtransformer.serving.validation import (
    ActRequest,
    is_openpi_request,
    parse_act_request,
    request_id_of,
)
from qtransformer.text import TextEncoder

log = logging.getLogger("qtransformer.serving")

TRANSPORT_SLACK = 4
"""The websocket frame limit is this multiple of ``max_message_bytes``: frames in between get a
``too_large`` error reply on a live connection; only frames beyond it make websockets close (1009)."""


@dataclass
class ServeArgs:
    """Serve a policy checkpoint to robots over websockets (msgpack + numpy), with dynamic batching."""

    checkpoint: str
    """Checkpoint directory (``model.safetensors`` + ``config.json``) to serve."""
    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address requires a token."""
    port: int = 8000
    """TCP port for websockets and the HTTP health/metrics endpoints; 0 picks a free one."""
    max_batch_size: int = 32
    """Most requests run together in one forward pass; 1 turns batching off."""
    max_wait_ms: float = 5.0
    """Longest the first request of a batch waits for company; the wait ends early once every open
    connection has a request queued."""
    max_queue: int = 1024
    """Requests allowed to wait for inference; beyond this clients get an ``overloaded`` error."""
    max_message_bytes: int = 8 * 2**20
    """Largest accepted request; larger ones get a ``too_large`` error (up to 4x, then the socket closes)."""
    no_auth: bool = False
    """Accept connections without a token (only allowed on a loopback host)."""
    force_no_auth: bool = False
    """Allow ``--no-auth`` on a non-loopback host anyway (anyone on the network can then act)."""
    token_env: str = DEFAULT_TOKEN_ENV
    """Environment variable holding the shared token."""
    token_file: str | None = None
    """File whose first line is the shared token (takes precedence over the environment variable)."""
    device: str = "cpu"
    """Torch device for the policy and the text encoder."""
    torch_threads: int = 0
    """Intra-op threads for inference; 0 uses every core the process may run on."""
    encoder: str | None = None
    """Text encoder directory overriding the one recorded in the checkpoint."""
    ping_interval: float | None = 20.0
    """Seconds between websocket keepalive pings (None disables them)."""
    log_level: str = "INFO"
    """Python logging level."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")


def _as_protocol_error(e: BaseException) -> ProtocolError:
    if isinstance(e, ProtocolError):
        return e
    if isinstance(e, (ValueError, TypeError)):  # the policy's own input checks
        return ProtocolError(BAD_OBSERVATION, str(e))
    log.error("inference failed", exc_info=e)
    return ProtocolError(INTERNAL, f"inference failed: {type(e).__name__}: {e}")


def _act(served: Served, requests: Sequence[ActRequest]) -> list[dict[str, Any]]:
    """One forward pass for the whole batch, split back into per-request replies."""
    obs: dict[str, np.ndarray] = {"state": np.stack([r.state for r in requests])}  # (B, S)
    images = [r.image for r in requests if r.image is not None]
    if len(images) == len(requests) and "image" in served.spec["observation"]:
        obs["image"] = np.stack(images)  # (B, V, H, W, 3)
    want_q = any(r.return_q for r in requests)
    out = served.policy.act(obs, [r.instruction for r in requests], return_q=want_q)
    version = served.info["version"]
    replies = []
    for i, r in enumerate(requests):
        reply: dict[str, Any] = {
            "action": out.actions[i].astype(np.float32),
            "bins": out.bins[i],
            "model_version": version,
        }
        if r.return_q and out.q_values is not None:
            reply["q_values"] = out.q_values[i]
        if r.openpi:  # openpi policies answer with an action chunk; ours is one step long
            reply["actions"] = reply["action"][None]
        replies.append(reply)
    return replies


class PolicyServer:
    """The websocket/HTTP front end around a :class:`ModelStore` and a :class:`DynamicBatcher`."""

    def __init__(self, args: ServeArgs, encoder: TextEncoder | None = None):
        self.args = args
        self.token = resolve_auth(
            args.host, args.no_auth, args.force_no_auth, args.token_env, args.token_file
        )
        self.store = ModelStore(args.device, encoder if encoder is not None else args.encoder)
        self.metrics = ServerMetrics()
        self.port: int | None = None
        self._server: Server | None = None
        self._batcher: DynamicBatcher | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._closing = False

    # ----- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen first (so /healthz answers while loading), then load the checkpoint."""
        self._reload_lock = asyncio.Lock()
        self._batcher = DynamicBatcher(
            self._run_batch,
            self.args.max_batch_size,
            self.args.max_wait_ms,
            self.args.max_queue,
            on_batch=self.metrics.record_batch,
            expected=lambda: self.metrics.connections_open,
        )
        self._batcher.start()
        self._server = await serve(
            self._handle,
            self.args.host,
            self.args.port,
            process_request=self._process_request,
            max_size=self.args.max_message_bytes * TRANSPORT_SLACK,
            compression=None,  # images barely compress and deflate would cost CPU the model needs
            ping_interval=self.args.ping_interval,
            server_header="qtransformer-serve",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "listening on ws://%s:%d (auth %s)", self.args.host, self.port, "on" if self.token else "OFF"
        )
        try:
            served = await asyncio.to_thread(self.store.build, self.args.checkpoint)
        except BaseException:
            await self.stop()  # leave nothing listening or running behind a failed start
            raise
        self.store.swap(served)
        log.info("serving %s (version %s)", served.info["path"], served.info["version"])

    async def stop(self) -> None:
        """Close the port and every connection, then the inference thread; safe to call twice."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.stop()

    async def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM; SIGHUP reloads the checkpoint (when run in the main thread)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload_logged()))
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()

    # ----- inference thread ------------------------------------------------------------------------
    def _run_batch(self, requests: Sequence[ActRequest]) -> list[Any]:
        """Runs in the inference thread. A failing batch is retried request by request so that one
        request the model rejects (e.g. after a reload changed the spec) fails alone."""
        served = self.store.current
        if served is None:
            return [ProtocolError(NOT_READY, "no model loaded yet")] * len(requests)
        try:
            return _act(served, requests)
        except Exception as e:
            if len(requests) == 1:
                return [_as_protocol_error(e)]
        results: list[Any] = []
        for r in requests:
            try:
                results.extend(_act(served, [r]))
            except Exception as e:
                results.append(_as_protocol_error(e))
        return results

    # ----- websocket -------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The handshake: the first message on every connection."""
        served = self.store.current
        assert served is not None, "connections are refused until a model is loaded"
        return {
            "type": "metadata",
            "server": "qtransformer",
            "protocol_version": PROTOCOL_VERSION,
            **served.spec,
            "model": served.info,
            "batching": {"max_batch_size": self.args.max_batch_size, "max_wait_ms": self.args.max_wait_ms},
            "limits": {"max_message_bytes": self.args.max_message_bytes},
        }

    async def _handle(self, ws: ServerConnection) -> None:
        self.metrics.connections_open += 1
        self.metrics.connections_total += 1
        try:
            await ws.send(packb(self.metadata()))
            async for message in ws:
                reply = await self._reply(message, ws)
                await ws.send(reply if isinstance(reply, str) else packb(reply))
        except ConnectionClosed:
            pass
        finally:
            self.metrics.connections_open -= 1

    async def _reply(self, message: str | bytes, ws: ServerConnection) -> dict[str, Any] | str:
        """Answer one frame. Every failure becomes an error reply; the connection stays open. A request
        in openpi's layout gets its error as a text frame ``"<code>: <message>"``, which openpi's
        client raises; everyone else gets the error map."""
        t0 = time.perf_counter()
        rid = None
        openpi = False
        self.metrics.record_message()
        try:
            if isinstance(message, str):
                raise ProtocolError(BAD_MESSAGE, "expected a binary frame holding msgpack, got a text frame")
            if len(message) > self.args.max_message_bytes:
                raise ProtocolError(
                    TOO_LARGE,
                    f"message of {len(message)} bytes exceeds max_message_bytes={self.args.max_message_bytes}",
                )
            msg = unpackb(message)
            if not isinstance(msg, dict):
                raise ProtocolError(BAD_MESSAGE, f"a message must be a map, got {type(msg).__name__}")
            rid = request_id_of(msg)
            openpi = is_openpi_request(msg)
            if "admin" in msg:
                return await self._admin(msg, rid, ws)
            served = self.store.current
            if served is None:
                raise ProtocolError(NOT_READY, "no model loaded yet")
            request = parse_act_request(msg, served.spec)
            batcher = self._batcher
            if batcher is None:
                raise ProtocolError(NOT_READY, "the server is shutting down")
            try:
                result = await batcher.submit(request)
            except QueueFullError as e:
                raise ProtocolError(OVERLOADED, str(e)) from None
            if isinstance(result.value, BaseException):
                raise _as_protocol_error(result.value)
            total_ms = (time.perf_counter() - t0) * 1000.0
            self.metrics.record_latency(total_ms)
            return {
                **result.value,
                "request_id": rid,
                "timing": {"queue_ms": result.queue_ms, "infer_ms": result.infer_ms, "total_ms": total_ms},
                "batch_size": result.batch_size,
            }
        except ProtocolError as e:
            self.metrics.record_error(e.code)
            return f"{e.code}: {e.message}" if openpi else error_reply(e.code, e.message, rid)
        except Exception as e:  # never let one message take the connection (or the server) down
            log.exception("unexpected failure while answering a message")
            self.metrics.record_error(INTERNAL)
            text = f"{type(e).__name__}: {e}"
            return f"{INTERNAL}: {text}" if openpi else error_reply(INTERNAL, text, rid)

    async def _admin(self, msg: dict[str, Any], rid: Any, ws: ServerConnection) -> dict[str, Any]:
        command = msg.get("admin")
        if command != "reload":
            raise ProtocolError(BAD_REQUEST, f"unknown admin command {command!r}; known: ['reload']")
        if self.token is not None:
            if not token_ok(msg.get("token"), self.token):
                raise ProtocolError(UNAUTHORIZED, "admin commands must carry the server token in 'token'")
        elif not is_loopback(str(ws.remote_address[0])):
            raise ProtocolError(UNAUTHORIZED, "admin commands without auth are accepted from localhost only")
        path = msg.get("path")
        if path is not None and not isinstance(path, str):
            raise ProtocolError(BAD_REQUEST, f"'path' must be a string, got {type(path).__name__}")
        info = await self.reload(path)
        return {"reloaded": True, "model": info, "request_id": rid}

    async def reload(self, path: str | None = None) -> dict[str, Any]:
        """Load ``path`` (default: the checkpoint being served) and swap it in; on failure keep the old
        model and raise a ``reload_failed`` :class:`ProtocolError` that names the problem."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            old = self.store.current
            target = path or (old.info["path"] if old is not None else self.args.checkpoint)
            try:
                served = await asyncio.to_thread(self.store.build, target)
            except Exception as e:
                self.metrics.reload_failures += 1
                still = f"still serving version {old.info['version']}" if old else "no model loaded"
                log.error("reload of %s failed (%s): %s", target, still, e)
                raise ProtocolError(RELOAD_FAILED, f"could not load {target!r}: {e} ({still})") from e
            self.store.swap(served)
            self.metrics.reloads += 1
            log.info("reloaded %s (version %s)", served.info["path"], served.info["version"])
            return served.info

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ProtocolError:
            pass  # already logged; the old model keeps serving

    # ----- plain HTTP on the same port -------------------------------------------------------------
    @staticmethod
    def _json(connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _unauthorized(self, connection: ServerConnection) -> Response:
        self.metrics.auth_failures += 1
        response = connection.respond(
            HTTPStatus.UNAUTHORIZED,
            "missing or invalid token: send the header 'Authorization: Bearer <token>' "
            "(or 'Api-Key <token>')\n",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="qtransformer"'
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return self._json(connection, HTTPStatus.OK, {"status": "ok"})
        served = self.store.current
        if path == "/readyz":
            ready = served is not None and not self._closing
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            return self._json(connection, status, {"ready": ready, "model": served.info if served else None})
        authorized = self.token is None or bearer_ok(request.headers.get("Authorization"), self.token)
        if path == "/metrics":
            if not authorized:
                return self._unauthorized(connection)
            extra = {
                "queue_depth": self._batcher.queued if self._batcher else 0,
                "model": served.info if served else None,
            }
            if "format=prometheus" in query:
                response = connection.respond(HTTPStatus.OK, self.metrics.prometheus(**extra))
                del response.headers["Content-Type"]
                response.headers["Content-Type"] = "text/plain; version=0.0.4"
                return response
            return self._json(connection, HTTPStatus.OK, self.metrics.snapshot(**extra))
        if not authorized:
            return self._unauthorized(connection)
        if served is None or self._closing:
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet; retry when /readyz answers 200\n"
            )
        return None  # go on with the websocket handshake


def run_serve(args: ServeArgs) -> None:
    """Entry point of ``qt serve``: configure logging and threads, then serve until interrupted."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(args.torch_threads or len(os.sched_getaffinity(0)))
    try:
        server = PolicyServer(args)  # auth problems fail here, before anything is loaded or bound
        asyncio.run(server.serve_forever())
    except (AuthConfigError, CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"qt serve: {e}") from None


if __name__ == "__main__":
    import tyro

    run_serve(tyro.cli(ServeArgs))
