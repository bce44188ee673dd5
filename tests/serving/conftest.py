"""Servers on free 127.0.0.1 ports, run in a background thread with their own event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from qtransformer.bins import ActionBins
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer
from qtransformer.returns import ReturnConfig
from qtransformer.serving.server import PolicyServer, ServeArgs

TOKEN = "serving-test-token-0123456789"


def make_checkpoint(path: Path, seed: int, **cfg) -> Path:
    torch.manual_seed(seed)
    base = dict(state_dim=8, action_dim=3, num_bins=32, d_model=64, n_layers=1, n_heads=2)
    base.update(cfg)
    model = QTransformer(ModelConfig(**base))
    c = model.cfg
    return save_policy_checkpoint(
        path,
        model,
        ActionBins([-1] * c.action_dim, [1] * c.action_dim, c.num_bins),
        "default",
        {"step": seed},
        returns=ReturnConfig(),
    )


class RunningServer:
    """A :class:`PolicyServer` on its own event loop thread; ``stop()`` shuts it down cleanly."""

    def __init__(self, args: ServeArgs, encoder):
        self.server = PolicyServer(args, encoder=encoder)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as e:
                self.error = e
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(30), "server did not start"
        if self.error:
            raise self.error
        self.port = self.server.port
        self.url = f"ws://127.0.0.1:{self.port}"

    def call(self, coro_fn, *args):
        """Run ``coro_fn(*args)`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(30)

    def http(self, path: str, token: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def http_json(self, path: str, token: str | None = None) -> tuple[int, dict]:
        status, body = self.http(path, token)
        return status, json.loads(body)

    def stop(self) -> None:
        if self.loop.is_running():
            self.call(self.server.stop)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "a": make_checkpoint(root / "a", seed=0),
        "b": make_checkpoint(root / "b", seed=1),
        "image": make_checkpoint(root / "image", seed=2, image_size=16, num_images=2, conv_channels=(8, 8)),
    }


@pytest.fixture(scope="session")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN + "\n")
    return path


def serve_args(checkpoint: Path, token_file: Path | None, **kw) -> ServeArgs:
    if token_file is None:
        kw.setdefault("no_auth", True)
    kw.setdefault("port", 0)
    return ServeArgs(
        checkpoint=str(checkpoint), token_file=None if token_file is None else str(token_file), **kw
    )


@pytest.fixture(scope="module")
def server(checkpoints, token_file, text_encoder):
    """An authenticated state-only server shared by a test module."""
    s = RunningServer(
        serve_args(checkpoints["a"], token_file, max_batch_size=16, max_wait_ms=5, max_message_bytes=2**20),
        text_encoder,
    )
    yield s
    s.stop()
