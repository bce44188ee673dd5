"""Every benchmark script, run at a tiny size as a user runs it (``python -m scripts.bench_x``), so that
none of them can stop working unnoticed. The figures at this size mean nothing; what is checked is that
the script runs to the end, that its last stdout line is one JSON object with the documented keys, and
that the figures are positive and finite.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envs import METAWORLD_ENVS

REPO = Path(__file__).resolve().parents[1]


def run_bench(module: str, *args: str, cwd: Path) -> dict[str, Any]:
    """Run ``python -m scripts.<module> args`` and return the JSON object of its last stdout line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # The timeout only guards against a hang; nothing here asserts on time.
    proc = subprocess.run(
        [sys.executable, "-m", f"scripts.{module}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{module} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{module} printed nothing"
    result = json.loads(lines[-1])
    assert isinstance(result, dict), f"{module}'s last line is not a JSON object: {lines[-1]!r}"
    return result


def assert_figures(result: dict[str, Any], keys: set[str]) -> None:
    """``keys`` are present and each is a positive, finite number."""
    missing = keys - result.keys()
    assert not missing, f"missing keys {sorted(missing)} in {result}"
    for k in keys:
        v = result[k]
        assert isinstance(v, int | float) and not isinstance(v, bool), f"{k} = {v!r} is not a number"
        assert math.isfinite(v) and v > 0, f"{k} = {v!r} is not positive and finite"


def test_bench_envs(tmp_path: Path) -> None:
    r = run_bench("bench_envs", "--steps", "20", "--camera-steps", "4", "--runs", "1", cwd=tmp_path)
    assert_figures(
        r,
        {
            "garbage_sort_steps_per_s",
            "garbage_sort_camera_steps_per_s",
            "navigate_steps_per_s",
            "navigate_camera_steps_per_s",
        },
    )
    assert r["machine"]["threads"] == 1
    if importlib.util.find_spec("metaworld") is None:  # the optional extra's envs are named, not run
        assert set(r["skipped"]) == set(METAWORLD_ENVS)
    else:
        assert_figures(r, {f"{n}_steps_per_s" for n in METAWORLD_ENVS})


def test_bench_inference(tmp_path: Path) -> None:
    r = run_bench("bench_inference", "--tiny", "--calls", "1", cwd=tmp_path)
    assert_figures(
        r,
        {
            "params",
            "naive_ms",
            "cached_ms",
            "speedup",
            "stream_plain_ms",
            "stream_ms",
            "stream_speedup",
            "batch32_actions_per_s",
            "batch32_stream_plain_actions_per_s",
            "batch32_stream_actions_per_s",
        },
    )
    # Neither the KV cache nor the frame-token cache may change what the policy does.
    assert r["actions_equal"] is True and r["stream_actions_equal"] is True
    assert r["tiny"] is True


def test_bench_loader(tmp_path: Path) -> None:
    out = tmp_path / "data"
    r = run_bench(
        "bench_loader",
        *("--transitions", "3000", "--stream", "0", "--runs", "1", "--episodes-per-file", "20"),
        *("--out", str(out), "--delete"),
        cwd=tmp_path,
    )
    assert_figures(
        r, {"transitions_per_s", "peak_rss_mb", "transitions", "dataset_frames", "dataset_disk_mb"}
    )
    # One whole epoch in whole batches of 256: at most one transition per frame, and most frames give one.
    assert r["dataset_frames"] == 3000
    assert 0.5 * 3000 < r["transitions"] <= 3000
    assert not (out / "3000").exists(), "--delete left the dataset behind"


@pytest.mark.parametrize("preset", ["reference", "pixels_small"])
def test_bench_train(tmp_path: Path, preset: str) -> None:
    r = run_bench("bench_train", "--tiny", "--steps", "2", "--batch", "4", "--preset", preset, cwd=tmp_path)
    assert_figures(
        r, {"params", "samples_per_s", "step_ms", "bc_baseline_samples_per_s", "q_step_over_bc_step"}
    )
    assert r["batch"] == 4 and r["tiny"] is True and r["preset"] == preset


@pytest.mark.slow
def test_bench_server(tmp_path: Path) -> None:
    r = run_bench(
        "bench_server",
        *("--clients", "2", "--requests-per-client", "2", "--single-requests", "2"),
        *("--d-model", "32", "--n-layers", "1", "--state-dim", "8", "--action-dim", "3", "--num-bins", "16"),
        cwd=tmp_path,
    )
    assert_figures(
        r,
        {
            "single_client_p50_ms",
            "rps_batched",
            "rps_unbatched",
            "p50_ms",
            "p99_ms",
            "speedup",
            "p99_over_single_p50",
            "batched_batch_size_mean",
        },
    )
    assert r["errors"] == 0
    assert r["clients"] == 2
    # Unbatched means one request per model call.
    assert r["unbatched_batch_size_mean"] == 1.0


def test_bench_actors(tmp_path: Path) -> None:
    r = run_bench("bench_actors", "--tiny", "--seconds", "1", "--actors", "1", "2", cwd=tmp_path)
    assert_figures(r, {"baseline_env_steps_per_s", "seconds"})
    assert set(r["env_steps_per_s"]) == set(r["ratio_to_baseline"]) == {"1", "2"}
    assert all(v > 0 and math.isfinite(v) for v in r["env_steps_per_s"].values())
    assert r["tiny"] is True
