"""The offline pipeline learns: datagen -> streaming loader -> conservative Q-learning -> greedy policy.

On the fake point-reaching env with mixed-quality data (half expert, 30% noisy, 20% walking away),
Q-Transformer must solve the task from language ("go left" / "go right"). Behaviour cloning with the same
network must learn it too: a baseline that cannot is a broken baseline (its head must emit raw logits).
"""

from __future__ import annotations

import pytest

from pretrain.datagen import DatagenArgs, run_datagen
from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.config import ModelConfig, OptimConfig
from qtransformer.policy import QTransformerPolicy

from .fake_env import FakeEnv


def _success(policy: QTransformerPolicy, episodes: int = 40) -> float:
    env, wins = FakeEnv("fake"), 0
    for s in range(episodes):
        obs, _ = env.reset(seed=10_000 + s)
        done = False
        while not done:
            action = policy.act({"state": obs["state"][None]}, [obs["instruction"]]).actions[0]
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += bool(info["is_success"])
    return wins / episodes


@pytest.mark.slow
def test_q_transformer_and_bc_both_learn_from_mixed_quality_data(tmp_path, text_encoder):
    data = run_datagen(
        DatagenArgs(env="navigate", out=tmp_path / "data", episodes=120, workers=1, seed=0),
        env_module="tests.pretrain.fake_env",
    )
    rates = {}
    for method in ("qtransformer", "bc"):
        run_pretrain(
            PretrainArgs(
                dataset=str(data),
                out=str(tmp_path / method),
                steps=300,
                batch_size=64,
                progress=False,
                model=ModelConfig(d_model=64, n_layers=2, n_heads=4),
                method=method,
                optim=OptimConfig(lr=1e-3, warmup_steps=20),
            )
        )
        rates[method] = _success(
            QTransformerPolicy.from_checkpoint(tmp_path / method / "policy", encoder=text_encoder)
        )
    assert rates["qtransformer"] >= 0.7, rates
    assert rates["bc"] >= 0.5, rates
