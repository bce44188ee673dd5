"""Pretraining runs for real at a tiny size: optimiser steps, 2 processes over gloo, SIGKILL + resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.config import ModelConfig
from qtransformer.policy import QTransformerPolicy

from .synthetic import write_coded

TINY = ["--model.d-model", "32", "--model.n-layers", "1", "--model.n-heads", "2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synth"
    write_coded(root, [10, 12, 8, 15, 9, 11, 10, 13], 2, image_size=16)
    return root


def test_pretrain_takes_real_steps_and_exports_a_policy(dataset, tmp_path, text_encoder):
    args = PretrainArgs(
        dataset=str(dataset),
        out=str(tmp_path / "run"),
        steps=6,
        batch_size=8,
        save_every=3,
        log_every=2,
        image_size=16,
        num_frames=2,
        progress=False,
        model=ModelConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=(8,)),
    )
    out = run_pretrain(args)
    summary = json.loads((out / "summary_rank0.json").read_text())
    assert summary["step"] == 6 and math.isfinite(summary["final_terms"]["loss"])
    assert summary["final_terms"]["grad_norm"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003", "step_00000006"]
    policy = QTransformerPolicy.from_checkpoint(out / "policy", encoder=text_encoder)
    assert policy.model.cfg.num_images == 2 and policy.meta["step"] == 6
    assert any((out / "logs").rglob("events.out.tfevents*"))


def _two_steps(dataset: Path, out: Path, **model: object) -> PretrainArgs:
    """Two optimiser steps of a tiny network with these ModelConfig fields."""
    return PretrainArgs(
        dataset=str(dataset),
        out=str(out),
        steps=2,
        batch_size=8,
        save_every=2,
        progress=False,
        model=ModelConfig(d_model=32, n_layers=1, n_heads=2, **model),
    )


def test_normalize_state_takes_the_datasets_statistics_into_the_policy(dataset, tmp_path, text_encoder):
    import torch

    from qtransformer.model import QTransformer

    args = _two_steps(dataset, tmp_path / "run", normalize_state=True)
    policy = QTransformerPolicy.from_checkpoint(run_pretrain(args) / "policy", encoder=text_encoder)
    st = json.loads((dataset / "meta/stats.json").read_text())["observation.state"]
    assert torch.allclose(policy.model.state_mean, torch.tensor(st["mean"], dtype=torch.float32))
    want_std = torch.tensor(st["std"], dtype=torch.float32).clamp_min(QTransformer.STATE_STD_FLOOR)
    assert torch.allclose(policy.model.state_std, want_std) and not torch.all(want_std == 1)
    # Without the flag the network sees the raw state.
    args.model = ModelConfig(d_model=32, n_layers=1, n_heads=2)
    args.out = str(tmp_path / "raw")
    raw = QTransformerPolicy.from_checkpoint(run_pretrain(args) / "policy", encoder=text_encoder)
    assert torch.equal(raw.model.state_std, torch.ones_like(want_std))


def test_normalize_instruction_takes_the_datasets_instructions_into_the_policy(
    dataset, tmp_path, text_encoder
):
    import torch

    from qtransformer.dataset import DatasetMeta, DatasetWriter

    from .synthetic import coded_episode

    two = tmp_path / "two"
    with DatasetWriter(two, episodes_per_file=2) as w:
        for i, text in enumerate(["pick up the can", "pick up the cup", "pick up the can"]):
            w.add_episode(coded_episode(i, 10, instruction=text))
    args = _two_steps(two, tmp_path / "run", normalize_instruction=True)
    policy = QTransformerPolicy.from_checkpoint(run_pretrain(args) / "policy", encoder=text_encoder)
    emb = text_encoder.encode(sorted(set(DatasetMeta.load(two).tasks)))
    assert len(emb) == 2  # each distinct instruction once
    assert torch.allclose(policy.model.instruction_mean, emb.mean(0), atol=1e-6)
    assert torch.allclose(
        policy.model.instruction_std, emb.std(0, unbiased=False).clamp_min(policy.model.INSTRUCTION_STD_FLOOR)
    )
    # One instruction has no spread to scale by: named, not a network that divides by the floor.
    args.dataset, args.out = str(dataset), str(tmp_path / "one")
    with pytest.raises(ValueError, match="at least two distinct instructions"):
        run_pretrain(args)


def test_bad_arguments_are_named(dataset, tmp_path):
    with pytest.raises(ValueError, match="steps must be >= 1"):
        PretrainArgs(dataset=str(dataset), steps=0)
    with pytest.raises(ValueError, match="pass --model.support-tau 0"):
        PretrainArgs(dataset=str(dataset), method="cql", model=ModelConfig(support_tau=0.3))
    with pytest.raises(ValueError, match="not 32x32"):
        run_pretrain(
            PretrainArgs(dataset=str(dataset), out=str(tmp_path / "r"), image_size=32, progress=False)
        )
    with pytest.raises(FileNotFoundError, match="not a dataset"):
        run_pretrain(PretrainArgs(dataset=str(tmp_path / "none"), out=str(tmp_path / "r"), progress=False))


def _qt(*args: str) -> list[str]:
    return [sys.executable, "-m", "scripts.cli", *args]


@pytest.mark.slow
def test_two_processes_over_gloo_end_with_identical_weights(dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "scripts.cli",
        "pretrain",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--save-every",
        "3",
        *TINY,
    ]
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    s0, s1 = (json.loads((out / f"summary_rank{r}.json").read_text()) for r in (0, 1))
    assert s0["distributed_type"] == "DistributedType.MULTI_CPU" and s0["processes"] == 2
    assert s0["weights_sha256"] == s1["weights_sha256"]
    assert s0["step"] == s1["step"] == 6
    ckpt = out / "checkpoints" / "step_00000006"
    assert (ckpt / "loader_rank0.json").exists() and (ckpt / "loader_rank1.json").exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_finishes_at_the_same_step(dataset, tmp_path):
    out = tmp_path / "killed"
    cmd = _qt(
        "pretrain",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--steps",
        "400",
        "--batch-size",
        "8",
        "--save-every",
        "5",
        *TINY,
    )
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "step_00000010").exists():
        assert p.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "summary_rank0.json").exists()
    done = sorted(c.name for c in (out / "checkpoints").glob("step_*"))
    killed_at = int(done[-1].split("_")[1])
    assert killed_at < 400
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / done[-1]} at step {killed_at}" in res.stdout + res.stderr
    summary = json.loads((out / "summary_rank0.json").read_text())
    assert summary["step"] == 400 and math.isfinite(summary["final_terms"]["loss"])
