"""``qt evaluate --task``: one task id instead of a task set, with a clear error for an unknown one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from envs.navigate import STATE_DIM as NAV_STATE_DIM
from pretrain.evaluate import EvalArgs, run_evaluate
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer
from qtransformer.returns import ReturnConfig


def test_evaluate_one_task(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = QTransformer(
        ModelConfig(state_dim=NAV_STATE_DIM, action_dim=3, num_bins=16, d_model=32, n_layers=1)
    )
    ckpt = save_policy_checkpoint(
        tmp_path / "policy",
        model,
        ActionBins([-1] * 3, [1] * 3, 16),
        "default",
        {"env": "navigate"},
        returns=ReturnConfig(),
    )
    res = run_evaluate(
        EvalArgs(checkpoint=str(ckpt), task="go_to:red_sphere", episodes=1, paraphrases=("train",))
    )
    assert list(res["train"]["per_task"]) == ["go_to:red_sphere"] and res["train"]["episodes"] == 1
    with pytest.raises(ValueError, match="unknown navigate task 'go_to:nowhere'"):
        run_evaluate(EvalArgs(checkpoint=str(ckpt), task="go_to:nowhere", episodes=1))
