"""The actor <-> learner link: websockets, msgpack-numpy (no pickle), a shared token, acknowledged episodes.

The learner listens (``LearnerLink``); actors connect from the same machine or from a robot's computer
(``ActorLink``). Every frame is one msgpack map in the wire format of ``qt serve``
(``qtransformer.serving.protocol``): arrays travel as tagged maps, object dtypes are refused, so a
message can never run code on the other side. The token is checked in the opening handshake
(``Authorization: Bearer <token>``), before anything is read.

Messages:

- learner -> actor, on connect: ``{"type": "hello", "protocol": 1, "spec": {...}}`` (what an actor
  needs to build its policy and env), then the newest ``{"type": "weights", "version": v, "weights":
  {name: array}}``, and every newer one as it is published;
- actor -> learner: ``{"type": "episode", "session": str, "seq": int, "episode": {...}, "stats": {...}}``;
- learner -> actor: ``{"type": "ack", "session": str, "seq": int}`` once the episode is stored (the
  learner's episode store is on disk), or ``{"type": "error", "code", "message"}`` for a refused message;
- learner -> actor: ``{"type": "stop"}`` when the run ends.

Nothing is lost: an actor writes each finished episode to its spool directory before sending it and
deletes it only when acknowledged, and resends whatever is unacknowledged after a reconnect (or after its
own restart with the same spool). The learner drops a resent episode it has already stored (it keys
episodes by ``(session, seq)``, and those keys are stored with the episodes, so a restarted learner knows
them too) and acknowledges it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection

from finetune.episode import Episode
from qtransformer.serving.auth import bearer_ok
from qtransformer.serving.client import AuthError, open_connection
from qtransformer.serving.protocol import (
    BAD_MESSAGE,
    BAD_REQUEST,
    INTERNAL,
    ProtocolError,
    packb,
    unpackb,
)

log = logging.getLogger("qtransformer.finetune.transport")

PROTOCOL = 1
MAX_FRAME_BYTES = 512 * 2**20
"""Largest frame either side accepts: a long episode of camera frames, or a large model's weights."""
MAX_SESSION_CHARS = 64
STAT_TYPES = (bool, int, float, str, type(None))


def new_token() -> str:
    """A random token for a learner whose actors it starts itself."""
    return secrets.token_urlsafe(24)


# ----- episodes on the wire -------------------------------------------------------------------------
def episode_to_wire(ep: Episode) -> dict[str, Any]:
    d: dict[str, Any] = {
        "state": np.ascontiguousarray(ep.state, np.float32),
        "action": np.ascontiguousarray(ep.action, np.float32),
        "reward": np.ascontiguousarray(ep.reward, np.float32),
        "terminated": bool(ep.terminated),
        "success": bool(ep.success),
        "instruction": ep.instruction,
        "task": ep.task,
    }
    if ep.image is not None:
        d["image"] = np.ascontiguousarray(ep.image, np.uint8)
    return d


def _array(d: Mapping[str, Any], key: str, kinds: str) -> np.ndarray:
    v = d.get(key)
    if not isinstance(v, np.ndarray):
        raise ProtocolError(BAD_REQUEST, f"episode field {key!r} must be an array, got {type(v).__name__}")
    if v.dtype.kind not in kinds:
        raise ProtocolError(BAD_REQUEST, f"episode field {key!r} has dtype {v.dtype}")
    return v


def episode_from_wire(d: Any, spec: Mapping[str, Any] | None = None) -> Episode:
    """Check and build an episode; ``spec`` (the learner's ``state_dim``, ``action_dim``, ``image``
    shape) bounds the shapes. Every problem is a :class:`ProtocolError` naming the field."""
    if not isinstance(d, Mapping):
        raise ProtocolError(BAD_REQUEST, f"'episode' must be a map, got {type(d).__name__}")
    state, action, reward = _array(d, "state", "f"), _array(d, "action", "f"), _array(d, "reward", "f")
    for key in ("terminated", "success"):
        if not isinstance(d.get(key), bool):
            raise ProtocolError(BAD_REQUEST, f"episode field {key!r} must be a bool")
    for key in ("instruction", "task"):
        if not isinstance(d.get(key), str):
            raise ProtocolError(BAD_REQUEST, f"episode field {key!r} must be a string")
    image = _array(d, "image", "u") if "image" in d else None
    if state.ndim != 2 or action.ndim != 2:
        raise ProtocolError(
            BAD_REQUEST, f"state and action must be (T+1, S) and (T, A), got {state.shape}, {action.shape}"
        )
    if spec is not None:
        if state.shape[1] != spec["state_dim"] or action.shape[1] != spec["action_dim"]:
            raise ProtocolError(
                BAD_REQUEST,
                f"episode has state width {state.shape[1]} and action width {action.shape[1]}, "
                f"the learner's model reads {spec['state_dim']} and {spec['action_dim']}",
            )
        want = spec.get("image")
        if (image is None) != (want is None) or (
            image is not None and want is not None and list(image.shape[1:]) != list(want)
        ):
            raise ProtocolError(
                BAD_REQUEST, f"episode images {None if image is None else image.shape[1:]}, expected {want}"
            )
    for name, arr in (("state", state), ("action", action), ("reward", reward)):
        if not np.all(np.isfinite(arr)):
            raise ProtocolError(BAD_REQUEST, f"episode field {name!r} holds NaN or inf")
    try:
        return Episode(
            state=state.astype(np.float32),
            action=action.astype(np.float32),
            reward=reward.astype(np.float32),
            terminated=d["terminated"],
            instruction=d["instruction"],
            task=d["task"],
            success=d["success"],
            image=None if image is None else image.astype(np.uint8),
        )
    except ValueError as e:  # Episode's own length checks
        raise ProtocolError(BAD_REQUEST, f"inconsistent episode: {e}") from None


def _stats(v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping) or len(v) > 64:
        raise ProtocolError(BAD_REQUEST, "'stats' must be a map of at most 64 entries")
    out = {}
    for k, x in v.items():
        if isinstance(x, np.generic):
            x = x.item()
        if not isinstance(k, str) or not isinstance(x, STAT_TYPES):
            raise ProtocolError(
                BAD_REQUEST, f"'stats' entry {k!r} must map a string to a number, bool or string"
            )
        if isinstance(x, float) and not math.isfinite(x):
            raise ProtocolError(BAD_REQUEST, f"'stats' entry {k!r} is not finite")
        out[k] = x
    return out


@dataclass
class Received:
    """An episode from an actor, waiting to be stored and then acknowledged (:meth:`LearnerLink.ack`)."""

    episode: Episode
    stats: dict[str, Any]
    session: str
    seq: int
    conn: Any = None


# ----- the learner's side ---------------------------------------------------------------------------
class LearnerLink:
    """A websocket server in a background thread: actors connect, get the spec and the newest weights,
    send episodes and get them acknowledged once the learner has stored them.

    ``token`` None accepts any peer (loopback only: ``host`` must be a loopback address then).
    ``seen`` are ``(session, seq)`` keys of episodes already stored (a resumed run's), acknowledged again
    without being handed out twice.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        spec: Mapping[str, Any] | None = None,
        seen: Iterable[tuple[str, int]] = (),
    ):
        from qtransformer.serving.auth import is_loopback

        if token is None and not is_loopback(host):
            raise ValueError(f"a learner listening on {host!r} needs a token (anyone there could send data)")
        self.token, self.spec = token, dict(spec or {})
        self._seen: set[tuple[str, int]] = set(seen)
        self._pending: dict[tuple[str, int], Received] = {}
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._conns: set[ServerConnection] = set()
        self._latest: bytes | None = None
        self.refused = 0
        self.loop = asyncio.new_event_loop()
        self._server: Server | None = None
        started = threading.Event()
        error: list[BaseException] = []

        async def start() -> None:
            self._server = await serve(
                self._handle,
                host,
                port,
                process_request=self._check_token,
                max_size=MAX_FRAME_BYTES,
                compression=None,
                ping_interval=20,
                ping_timeout=60,
            )

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(start())
            except BaseException as e:  # the port is taken, the host cannot be bound
                error.append(e)
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="learner-link", daemon=True)
        self._thread.start()
        started.wait(30)
        if error:
            raise error[0]
        assert self._server is not None
        self.address: tuple[str, int] = self._server.sockets[0].getsockname()[:2]
        self.url: str = f"ws://{host}:{self.address[1]}"

    def _check_token(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.token is None or bearer_ok(request.headers.get("Authorization"), self.token):
            return None
        self.refused += 1
        return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or invalid learner token\n")

    async def _handle(self, ws: ServerConnection) -> None:
        self._conns.add(ws)
        try:
            await ws.send(packb({"type": "hello", "protocol": PROTOCOL, "spec": self.spec}))
            if self._latest is not None:
                await ws.send(self._latest)
            async for message in ws:
                reply = self._receive(message, ws)
                if reply is not None:
                    await ws.send(packb(reply))
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(ws)

    def _receive(self, message: str | bytes, ws: ServerConnection) -> dict[str, Any] | None:
        try:
            msg = unpackb(message)  # a text frame is refused there
            if not isinstance(msg, dict) or msg.get("type") != "episode":
                raise ProtocolError(BAD_REQUEST, "an actor sends maps of type 'episode'")
            session, seq = msg.get("session"), msg.get("seq")
            if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_CHARS:
                raise ProtocolError(BAD_REQUEST, f"'session' must be a string of 1-{MAX_SESSION_CHARS} chars")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ProtocolError(BAD_REQUEST, "'seq' must be an int >= 0")
            key = (session, seq)
            if key in self._seen:
                return {"type": "ack", "session": session, "seq": seq}  # a resend of a stored episode
            if key in self._pending:  # a resend of one still being stored: ack it on this connection
                self._pending[key].conn = ws
                return None
            ep = episode_from_wire(msg.get("episode"), self.spec or None)
            stats = _stats(msg.get("stats", {}))
            received = Received(ep, stats, session, seq, ws)
            self._pending[key] = received
            self._inbox.put(received)
            return None
        except ProtocolError as e:
            self.refused += 1
            return {"type": "error", "code": e.code, "message": e.message}
        except Exception as e:  # never let one message take the link down
            log.exception("unexpected failure on an actor message")
            return {"type": "error", "code": INTERNAL, "message": f"{type(e).__name__}: {e}"}

    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def num_actors(self) -> int:
        return len(self._conns)

    def publish(self, version: int, state_dict: Mapping[str, Any]) -> None:
        """Send these weights to every actor now and to every actor that connects later."""
        arrays = {
            k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            for k, v in state_dict.items()
        }
        self._broadcast(packb({"type": "weights", "version": int(version), "weights": arrays}))

    def _broadcast(self, frame: bytes) -> None:
        """Send ``frame`` to every connected actor, and to every actor that connects later."""

        async def send() -> None:
            self._latest = frame
            for ws in list(self._conns):
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(frame)

        self._call(send())

    def poll_episodes(self, timeout: float = 0.0) -> list[Received]:
        """Episodes received and not yet handed out (waits up to ``timeout`` s for the first)."""
        out: list[Received] = []
        try:
            out.append(self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait())
            while True:
                out.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        return out

    def ack(self, received: Received) -> None:
        """The episode is stored: never hand it out again, and tell its actor (if still connected; after
        a reconnect the actor resends it and gets the ack then)."""
        key = (received.session, received.seq)
        msg = packb({"type": "ack", "session": received.session, "seq": received.seq})

        async def send() -> None:  # in the link's thread, so it sees a connection a resend moved it to
            self._seen.add(key)
            self._pending.pop(key, None)
            if received.conn is not None:
                with contextlib.suppress(ConnectionClosed):
                    await received.conn.send(msg)

        asyncio.run_coroutine_threadsafe(send(), self.loop)

    def stop_actors(self) -> None:
        """Tell every actor, connected now or reconnecting later, that the run is over."""
        self._broadcast(packb({"type": "stop"}))

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self._call(stop(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# ----- the actor's side -----------------------------------------------------------------------------
_SPOOLED = re.compile(r"^(\d{12})\.msgpack$")


class Spool:
    """Finished episodes not yet acknowledged, one file each (written atomically), plus the actor's
    session id and its next sequence number, so that a restarted actor resends what it had not got
    acknowledged and the learner recognises what it already stored."""

    def __init__(self, root: str | os.PathLike):
        from finetune.store import _atomic_write

        self._write = _atomic_write
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
        sid = self.root / "session"
        if not sid.exists():
            self._write(sid, secrets.token_hex(8).encode())
        self.session = sid.read_text().strip()
        seqs = [int(m.group(1)) for p in self.root.iterdir() if (m := _SPOOLED.match(p.name))]
        counter = self.root / "next_seq"
        stored = int(counter.read_text()) if counter.exists() else 0
        self.next_seq = max([stored, *(s + 1 for s in seqs)])
        run = self.root / "run"
        self.run = run.read_text().strip() if run.exists() else ""

    def set_run(self, run: str) -> list[int]:
        """Record the run this spool collects for; episodes of the previous run move to
        ``orphaned/<previous run>/``. Returns their sequence numbers."""
        moved = []
        if self.run:
            aside = self.root / "orphaned" / (re.sub(r"[^A-Za-z0-9_.-]", "_", self.run) or "unknown")
            for seq, _ in self.pending():
                aside.mkdir(parents=True, exist_ok=True)
                os.replace(self.root / f"{seq:012d}.msgpack", aside / f"{seq:012d}.msgpack")
                moved.append(seq)
        self._write(self.root / "run", run.encode())
        self.run = run
        return moved

    def add(self, seq: int, frame: bytes) -> None:
        """Keep episode ``seq``'s frame on disk, and remember that numbering goes on after it."""
        self._write(self.root / f"{seq:012d}.msgpack", frame)
        self._write(self.root / "next_seq", str(seq + 1).encode())

    def pending(self) -> list[tuple[int, bytes]]:
        files = sorted(p for p in self.root.iterdir() if _SPOOLED.match(p.name))
        return [(int(p.name[:12]), p.read_bytes()) for p in files]

    def remove(self, seq: int) -> None:
        (self.root / f"{seq:012d}.msgpack").unlink(missing_ok=True)


class ActorLink:
    """An actor's connection to a learner, kept up by a background thread: it reconnects with backoff
    when the learner goes away (a restart), resends every unacknowledged episode, and keeps the newest
    weights for the actor to pick up between episodes.

    ``spool`` is where unacknowledged episodes wait on disk (None: in memory only, so an actor killed
    while the learner is away loses them). ``reconnect_timeout`` is how long the learner may stay
    unreachable before :meth:`latest_weights` and :meth:`send_episode` raise ``ConnectionError``.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        spool: str | os.PathLike | None = None,
        connect_timeout: float = 60.0,
        reconnect_timeout: float = 600.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ):
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"the learner address must be ws://HOST:PORT, got {url!r}")
        self.url, self.token = url, token
        self.reconnect_timeout, self.backoff_s, self.max_backoff_s = (
            reconnect_timeout,
            backoff_s,
            max_backoff_s,
        )
        self.spool = Spool(spool) if spool is not None else None
        self.session = self.spool.session if self.spool else secrets.token_hex(8)
        self._next_seq = self.spool.next_seq if self.spool else 0
        self._lock = threading.Lock()
        self._unacked: dict[int, bytes] = dict(self.spool.pending()) if self.spool else {}
        self._sent: set[int] = set()
        self._weights: tuple[int, dict[str, np.ndarray]] | None = None
        self._weights_event = threading.Event()
        self._acked = threading.Condition(self._lock)
        self.hello: dict[str, Any] | None = None
        self._hello_event = threading.Event()
        self.stopped = False
        self.connected = False
        self.reconnects = -1
        self.errors: list[dict[str, Any]] = []
        self._fatal: BaseException | None = None
        self._down_since: float | None = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="actor-link", daemon=True)
        self._thread.start()
        if not self._hello_event.wait(connect_timeout):
            self.close()
            raise ConnectionError(f"no learner answered at {url} within {connect_timeout} s")
        self.check()

    # ----- background thread -----------------------------------------------------------------------
    def _open(self) -> ClientConnection:
        ws = open_connection(self.url, self.token, 10.0, max_size=MAX_FRAME_BYTES)
        hello = unpackb(ws.recv(timeout=10))
        if not isinstance(hello, dict) or hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL:
            ws.close()
            raise ProtocolError(
                BAD_MESSAGE, f"{self.url} is not a qtransformer learner (protocol {PROTOCOL})"
            )
        self.hello = hello
        if self.spool is not None:
            self._adopt_run(str(hello.get("spec", {}).get("run", "")))
        return ws

    def _adopt_run(self, run: str) -> None:
        """Spooled episodes belong to the run that was being practised; an actor pointed at another run
        moves them aside (``orphaned/<run>/``) rather than feed them to the wrong replay."""
        assert self.spool is not None
        before = self.spool.run
        if before == run:
            return
        moved = self.spool.set_run(run)
        if moved:
            with self._lock:
                for seq in moved:
                    self._unacked.pop(seq, None)
            log.warning(
                "moved %d episode(s) of run %r aside: the learner practises run %r", len(moved), before, run
            )

    def _run(self) -> None:
        delay = self.backoff_s
        while not self._closed and not self.stopped:
            try:
                ws = self._open()
            except AuthError as e:
                self._fatal = e
                self._hello_event.set()
                self._weights_event.set()
                return
            except (OSError, TimeoutError, ConnectionError, ConnectionClosed, ProtocolError):
                time.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)
                continue
            delay = self.backoff_s
            self.connected, self._down_since = True, None
            self.reconnects += 1
            self._hello_event.set()
            with self._lock:
                self._sent.clear()  # resend everything unacknowledged on the new connection
            try:
                self._serve(ws)
            except (OSError, TimeoutError, ConnectionClosed):
                pass
            finally:
                self.connected = False
                self._down_since = time.monotonic()
                with contextlib.suppress(Exception):
                    ws.close()

    def _serve(self, ws: ClientConnection) -> None:
        while not self._closed:
            with self._lock:
                todo = sorted((s, f) for s, f in self._unacked.items() if s not in self._sent)
            for seq, frame in todo:
                ws.send(frame)
                with self._lock:
                    self._sent.add(seq)
            try:
                raw = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            msg = unpackb(raw) if isinstance(raw, bytes) else None
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "weights":
                # Writable copies: the decoded arrays are read-only views of the frame.
                self._weights = (int(msg["version"]), {k: np.array(v) for k, v in msg["weights"].items()})
                self._weights_event.set()
            elif kind == "ack" and msg.get("session") == self.session:
                seq = int(msg["seq"])
                if self.spool is not None:  # off the disk first: flush() returning means it is gone
                    self.spool.remove(seq)
                with self._lock:
                    self._unacked.pop(seq, None)
                    self._acked.notify_all()
            elif kind == "error":
                log.error("the learner refused a message: %s", msg.get("message"))
                self.errors.append(msg)
            elif kind == "stop":
                self.stopped = True
                self._weights_event.set()
                with self._lock:
                    self._acked.notify_all()
                return

    # ----- the actor's calls -----------------------------------------------------------------------
    def check(self) -> None:
        """Raise if the learner refused the token or has been unreachable for ``reconnect_timeout``."""
        if self._fatal is not None:
            raise self._fatal
        down = self._down_since
        if down is not None and time.monotonic() - down > self.reconnect_timeout:
            raise ConnectionError(
                f"the learner at {self.url} has been unreachable for {self.reconnect_timeout} s"
            )

    def latest_weights(self, timeout: float = 0.0) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest weights not yet picked up (older ones are skipped), or None."""
        if self._weights is None:
            self._weights_event.wait(timeout)
        self.check()
        got, self._weights = self._weights, None
        self._weights_event.clear()
        return got

    def send_episode(self, ep: Episode, stats: Mapping[str, Any] | None = None) -> int:
        """Queue a finished episode (on disk first, with a spool); the link sends it and resends it
        until the learner acknowledges it. Returns its sequence number."""
        self.check()
        seq = self._next_seq
        frame = packb(
            {
                "type": "episode",
                "session": self.session,
                "seq": seq,
                "episode": episode_to_wire(ep),
                "stats": dict(stats or {}),
            }
        )
        if self.spool is not None:
            self.spool.add(seq, frame)
        self._next_seq = seq + 1
        with self._lock:
            self._unacked[seq] = frame
        return seq

    @property
    def pending(self) -> int:
        """Episodes sent or queued and not yet acknowledged."""
        with self._lock:
            return len(self._unacked)

    def flush(self, timeout: float) -> bool:
        """Wait until every episode is acknowledged (or the learner stopped the run); True if none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unacked and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._acked.wait(min(left, 0.1))
            return not self._unacked

    def close(self) -> None:
        self._closed = True
        self._thread.join(5)
