"""Actor <-> learner exchange over TCP (``multiprocessing.connection``, HMAC-authenticated).

The learner listens; actors connect from the same machine or from a robot's computer. Actors send
finished episodes; the learner publishes weights every N updates. Messages are pickled, which is why
the connection requires the shared ``authkey`` (only peers holding it can send anything).
"""

from __future__ import annotations

import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np

from finetune.episode import Episode


def weights_message(version: int, state_dict: dict[str, Any]) -> tuple[str, int, dict[str, np.ndarray]]:
    """Weights travel as numpy arrays so that an actor needs no shared memory with the learner."""
    return ("weights", version, {k: v.detach().cpu().numpy() for k, v in state_dict.items()})


class LearnerEndpoint:
    """Accepts actor connections in the background; collects episodes and broadcasts weights."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, authkey: bytes = b"qtransformer"):
        self.listener = Listener((host, port), authkey=authkey)
        self.address: tuple[str, int] = self.listener.address  # type: ignore[assignment]
        self.conns: list[Connection] = []
        self._lock = threading.Lock()
        self._latest: tuple[str, int, dict[str, np.ndarray]] | None = None
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self.listener.accept()
            except (OSError, EOFError, AuthenticationError):
                if self._closed:
                    return
                continue  # a peer without the authkey, or one that hung up mid-handshake
            with self._lock:
                self.conns.append(conn)
                if self._latest is not None:
                    self._send(conn, self._latest)

    def _send(self, conn: Connection, msg: Any) -> bool:
        try:
            conn.send(msg)
            return True
        except (OSError, EOFError, BrokenPipeError):
            return False

    @property
    def num_actors(self) -> int:
        with self._lock:
            return len(self.conns)

    def publish(self, version: int, state_dict: dict[str, Any]) -> None:
        msg = weights_message(version, state_dict)
        with self._lock:
            self._latest = msg
            self.conns = [c for c in self.conns if self._send(c, msg)]

    def poll_episodes(self, timeout: float = 0.0) -> list[tuple[Episode, dict[str, Any]]]:
        """Every (episode, its statistics) received so far (waits up to ``timeout`` s for the first one).
        The statistics are what the actor measured while collecting (safety violations, human resets)."""
        deadline = time.monotonic() + timeout
        out: list[tuple[Episode, dict[str, Any]]] = []
        while True:
            with self._lock:
                conns = list(self.conns)
            dead = []
            for c in conns:
                try:
                    while c.poll():
                        kind, payload, *rest = c.recv()
                        if kind == "episode":
                            out.append((Episode.from_arrays(payload), dict(rest[0]) if rest else {}))
                except (OSError, EOFError):
                    dead.append(c)
            if dead:
                with self._lock:
                    self.conns = [c for c in self.conns if c not in dead]
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(0.01)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for c in self.conns:
                c.close()
            self.conns = []
        self.listener.close()


class ActorEndpoint:
    """An actor's side: send episodes, pick up the newest published weights."""

    def __init__(
        self, address: tuple[str, int], authkey: bytes = b"qtransformer", connect_timeout: float = 30.0
    ):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.conn = Client(address, authkey=authkey)
                break
            except (ConnectionRefusedError, OSError):
                if time.monotonic() > deadline:
                    raise ConnectionError(f"no learner listening at {address[0]}:{address[1]}") from None
                time.sleep(0.2)

    def send_episode(self, ep: Episode, stats: dict[str, Any] | None = None) -> None:
        """Send a finished episode with the statistics the actor measured while collecting it."""
        self.conn.send(("episode", ep.to_arrays(), dict(stats or {})))

    def latest_weights(self, timeout: float = 0.0) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest weights waiting (older ones are skipped), or None."""
        latest = None
        if self.conn.poll(timeout):
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "weights":
                    latest = (msg[1], msg[2])
        return latest

    def close(self) -> None:
        self.conn.close()
