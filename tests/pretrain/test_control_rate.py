"""Env settings travel with the data (Navigate's control rate, GarbageSort's start jitter): datagen records
them, training and fine-tuning reuse them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.builder import env_settings
from finetune.train import FinetuneArgs
from pretrain.datagen import DatagenArgs, run_datagen
from qtransformer.dataset import DatasetMeta, dataset_meta


def test_datagen_records_the_rate_and_consumers_reuse_it(tmp_path: Path) -> None:
    out = run_datagen(DatagenArgs(env="navigate", out=tmp_path / "d", preset="tiny", workers=1, control_hz=5))
    meta = DatasetMeta.load(out)
    assert meta.fps == 5
    assert json.loads((out / "meta" / "info.json").read_text())["fps"] == 5
    assert max(e.length for e in meta.episodes) <= 30  # the preset's explicit time limit still applies
    assert dataset_meta(str(out))["env_kwargs"] == {"control_hz": 5.0}

    args = FinetuneArgs(env="navigate", prior_data=str(out), out=str(tmp_path / "ft"))
    assert env_settings(args, None) == {"control_hz": 5.0}
    policy_meta = {"env": "navigate", "env_kwargs": {"control_hz": 5.0}}
    assert env_settings(args, policy_meta) == {"control_hz": 5.0}
    with pytest.raises(ValueError, match="control_hz differs"):
        env_settings(args, {"env": "navigate", "env_kwargs": {"control_hz": 10.0}})


def test_control_rate_is_navigate_only() -> None:
    with pytest.raises(ValueError, match="navigate env only"):
        DatagenArgs(env="garbage_sort", control_hz=5)


def test_garbage_start_jitter_travels_with_the_data(tmp_path: Path) -> None:
    out = run_datagen(
        DatagenArgs(env="garbage_sort", out=tmp_path / "d", preset="tiny", workers=1, start_jitter=0.08)
    )
    assert dataset_meta(str(out))["env_kwargs"] == {"start_jitter": 0.08}
    args = FinetuneArgs(env="garbage_sort", prior_data=str(out), out=str(tmp_path / "ft"))
    assert env_settings(args, None) == {"start_jitter": 0.08}
    with pytest.raises(ValueError, match="start_jitter differs"):
        env_settings(args, {"env": "garbage_sort", "env_kwargs": {"start_jitter": 0.1}})
    with pytest.raises(ValueError, match="garbage_sort env only"):
        DatagenArgs(env="navigate", start_jitter=0.1)
