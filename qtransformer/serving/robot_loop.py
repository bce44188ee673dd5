"""Drive a Gymnasium environment (a simulator or a real arm) from a policy server.

This is the whole robot path: the environment's observation dict (``state``, optional ``image``,
``instruction``) goes to the server, the returned action goes to ``env.step``. Before the first step
the server's handshake is checked against the environment's spaces, so a robot talking to the wrong
model fails with a clear message instead of moving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class ActClient(Protocol):
    """What the loop needs from :class:`~qtransformer.serving.client.PolicyClient`."""

    metadata: dict[str, Any]

    def act(self, observation: Mapping[str, Any], instruction: str) -> dict[str, Any]: ...


@dataclass
class EpisodeResult:
    """Outcome of one episode."""

    episode_return: float
    """Sum of rewards."""
    length: int
    """Environment steps taken."""
    success: bool
    """``info['success']`` (or ``is_success``) at the last step; False when the env does not say."""
    instruction: str
    """The instruction the policy was given."""
    latency_ms: list[float] = field(default_factory=list)
    """Round-trip time of every server call, for spotting a slow link."""


def check_compatible(env: Any, metadata: Mapping[str, Any]) -> None:
    """Raise ValueError if the served model's action or state shape differs from the environment's."""
    want_action = tuple(metadata["action"]["shape"])
    have_action = tuple(getattr(env.action_space, "shape", ()) or ())
    if have_action != want_action:
        raise ValueError(
            f"the server's actions have shape {want_action}, the environment takes {have_action}"
        )
    obs_space = getattr(env, "observation_space", None)
    spaces = getattr(obs_space, "spaces", None)
    if spaces is not None and "state" in spaces:
        want_state = tuple(metadata["observation"]["state"]["shape"])
        if tuple(spaces["state"].shape) != want_state:
            raise ValueError(
                f"the server expects state of shape {want_state}, the environment gives "
                f"{tuple(spaces['state'].shape)}"
            )


def run_env_with_server(
    env: Any,
    client: ActClient,
    episodes: int = 1,
    max_steps: int | None = None,
    instruction: str | None = None,
    seed: int | None = None,
    on_step: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> list[EpisodeResult]:
    """Run ``episodes`` episodes of ``env`` with actions from ``client``.

    ``instruction`` overrides the one in the observation (needed when the env does not provide one);
    ``on_step(observation, reply)`` is called after every server reply, e.g. to log Q-values.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    check_compatible(env, client.metadata)
    low = np.asarray(client.metadata["action"]["low"], dtype=np.float32)
    high = np.asarray(client.metadata["action"]["high"], dtype=np.float32)
    results = []
    for ep in range(episodes):
        obs, info = env.reset(seed=None if seed is None else seed + ep)
        text = instruction or obs.get("instruction")
        if not isinstance(text, str) or not text:
            raise ValueError("the observation has no 'instruction'; pass instruction=...")
        total, steps, success, lat = 0.0, 0, False, []
        while max_steps is None or steps < max_steps:
            t0 = time.perf_counter()
            reply = client.act(obs, text)
            lat.append((time.perf_counter() - t0) * 1000.0)
            if on_step is not None:
                on_step(obs, reply)
            action = np.clip(np.asarray(reply["action"], dtype=np.float32), low, high)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            success = bool(info.get("success", info.get("is_success", False)))
            if terminated or truncated:
                break
        results.append(EpisodeResult(total, steps, success, text, lat))
    return results
