"""Every ``qt`` subcommand really runs at a tiny size, through the installed CLI entry point."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

# What the installed ``qt`` console script runs: the exit status is main()'s return value.
QT = [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())"]
TINY_MODEL = ["--model.d-model", "32", "--model.n-layers", "1", "--model.n-heads", "2"]


def qt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([*QT, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"qt {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def test_help_lists_every_command_and_unknown_commands_fail():
    out = qt("--help").stdout
    for name in ("datagen", "pretrain", "evaluate", "finetune", "serve", "demo"):
        assert name in out
    res = subprocess.run([*QT, "nope"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown command 'nope'" in res.stderr
    assert "--loss.alpha" in qt("pretrain", "--help").stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    """datagen -> pretrain, shared by the commands that need a dataset or a checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    data, run = root / "data", root / "pretrain"
    qt("datagen", "--env", "navigate", "--preset", "tiny", "--out", str(data), "--workers", "1")
    qt(
        "pretrain",
        "--dataset",
        str(data),
        "--out",
        str(run),
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--save-every",
        "2",
        *TINY_MODEL,
    )
    return {"root": root, "data": data, "policy": run / "policy", "run": run}


def test_datagen_and_pretrain(pipeline):
    info = json.loads((pipeline["data"] / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 6 and info["codebase_version"] == "v3.0"
    summary = json.loads((pipeline["run"] / "summary_rank0.json").read_text())
    assert summary["step"] == 4 and math.isfinite(summary["final_terms"]["loss"])


def test_evaluate(pipeline):
    out = pipeline["root"] / "eval.json"
    qt("evaluate", "--checkpoint", str(pipeline["policy"]), "--episodes", "1", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["split"] == "train" and res["seeds"] == 1
    assert res["episodes"] == len(res["per_task"]) >= 1


def test_pixels_datagen_pretrain_evaluate(tmp_path):
    """Camera + proprioception end to end: the policy reads images because the dataset is a pixel one."""
    data, run = tmp_path / "data", tmp_path / "run"
    qt("datagen", "--env", "navigate", "--preset", "tiny", "--out", str(data), "--workers", "1",
       "--observation", "pixels", "--image-size", "16", "--camera", "onboard")  # fmt: skip
    made = json.loads((data / "meta" / "datagen.json").read_text())
    assert made["observation"] == "pixels" and made["camera"] == "onboard"
    info = json.loads((data / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["shape"] == [7]
    assert info["features"]["observation.images.main"]["shape"][:2] == [16, 16]
    qt("pretrain", "--dataset", str(data), "--out", str(run), "--steps", "3", "--batch-size", "8",
       *TINY_MODEL)  # fmt: skip
    cfg = json.loads((run / "policy" / "config.json").read_text())
    assert cfg["model"]["image_size"] == 16 and cfg["model"]["state_dim"] == 7
    assert cfg["meta"]["env_kwargs"]["observation"] == "pixels"
    assert cfg["meta"]["env_kwargs"]["camera"] == "onboard"
    out = tmp_path / "eval.json"
    qt("evaluate", "--checkpoint", str(run / "policy"), "--task", "go_to:red_sphere", "--episodes", "2",
       "--out", str(out))  # fmt: skip
    res = json.loads(out.read_text())
    assert res["observation"] == "pixels" and res["episodes"] == 2


def test_finetune(pipeline):
    out = pipeline["root"] / "ft"
    qt(
        "finetune",
        "--env",
        "navigate",
        "--pretrained",
        str(pipeline["policy"]),
        "--prior-data",
        str(pipeline["data"]),
        "--out",
        str(out),
        "--env-steps",
        "60",
        "--utd",
        "0.5",
        "--batch-size",
        "16",
        "--eval-every",
        "30",
        "--eval-episodes",
        "1",
    )
    s = json.loads((out / "summary.json").read_text())
    assert s["env_steps"] >= 60 and s["updates"] >= 30 and s["prior_episodes"] > 0
    assert s["aprl_primed_transitions"] > s["prior_episodes"]  # APRL is on by default and saw the prior data
    assert len(list((out / "episodes").glob("ep_*.npz"))) == s["episodes"]


def test_serve_answers_a_client(pipeline):
    from qtransformer.serving.client import PolicyClient

    p = subprocess.Popen(
        [*QT, "serve", "--checkpoint", str(pipeline["policy"]), "--port", "0", "--no-auth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            if m := re.search(r"listening on ws://[\d.]+:(\d+)", line):
                port = int(m.group(1))
        assert port, "the server did not report its port"
        import urllib.error
        import urllib.request

        ready = False
        while not ready and time.monotonic() < deadline:  # the port opens before the model is loaded
            try:
                ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        assert ready, "the server never became ready"
        client = PolicyClient(f"ws://127.0.0.1:{port}", timeout=60)
        state_dim = client.metadata["observation"]["state"]["shape"][0]
        import numpy as np

        reply = client.act({"state": np.zeros(state_dim, np.float32)}, "go to the red cone")
        assert np.all(np.abs(reply["action"]) <= 1.0) and reply["action"].shape == (3,)
        client.close()
    finally:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    out = tmp_path / "demo"
    qt(
        "demo",
        "--out",
        str(out),
        "--episodes",
        "6",
        "--pretrain-steps",
        "4",
        "--finetune-env-steps",
        "40",
        "--eval-episodes",
        "1",
        "--heldout-episodes",
        "2",
        "--workers",
        "1",
        "--tiny",
    )
    res = json.loads((out / "results.json").read_text())
    for f in ("curve.png", "rollout_before.gif", "rollout_after.gif", "report.md"):
        assert (out / f).stat().st_size > 0
    assert 0.0 <= res["finetuned_success_heldout_task"] <= 1.0
    # The held-out task is evaluated on its own episode count, and the report says how many.
    assert "| held-out task after fine-tuning | 2 |" in (out / "report.md").read_text()
    # The zero-shot and final figures are the curve's end points: the same start states, one evaluator.
    assert res["zero_shot_success_heldout_task"] == res["finetune_curve"][0]["success_rate"]
    assert res["finetuned_success_heldout_task"] == res["finetune_curve"][-1]["success_rate"]
    # Each held-out figure comes with its Wilson interval over the episodes played.
    from pretrain.evaluate import wilson_interval

    k = round(2 * res["finetuned_success_heldout_task"])
    assert res["finetuned_ci95_heldout_task"] == list(wilson_interval(k, 2))
    # Navigate's demo runs at 4 Hz: the data records it and the fine-tuned policy kept it.
    assert res["control_hz"] == 4.0
    assert json.loads((out / "data" / "meta" / "info.json").read_text())["fps"] == 4
    tuned = json.loads((out / "finetune" / "policy" / "config.json").read_text())
    assert tuned["meta"]["env_kwargs"] == {"control_hz": 4.0}
    from PIL import Image

    with Image.open(out / "rollout_after.gif") as gif:
        assert gif.info["duration"] == 250  # one frame per 4 Hz control step, in ms


def test_render_rollout_of_a_policy_and_of_the_expert(pipeline, tmp_path):
    import imageio.v2 as imageio

    script = [sys.executable, "scripts/render_rollout.py", "--env", "navigate", "--task", "go_to:red_sphere"]
    for who, extra in (("policy", ["--checkpoint", str(pipeline["policy"])]), ("expert", [])):
        gif, sheet = tmp_path / f"{who}.gif", tmp_path / f"{who}.png"
        res = subprocess.run(
            [*script, *extra, "--size", "48", "--out", str(gif), "--sheet", str(sheet)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert res.returncode == 0, res.stderr[-2000:]
        r = json.loads(res.stdout.strip().splitlines()[-1])
        assert r["task"] == "go_to:red_sphere" and r["steps"] >= 1
        # first frame, one per step, the linger (GIF encoding may merge identical consecutive frames)
        assert 1 < len(imageio.mimread(gif)) <= r["steps"] + 1 + 5
        picture = imageio.imread(sheet)
        assert picture.shape == (48, 8 * 48, 3) and picture.std() > 10  # a rendered scene, not a blank
    assert r["success"]  # the expert reaches the landmark
    wrong_env = [sys.executable, "scripts/render_rollout.py", "--env", "garbage_sort"]
    res = subprocess.run(
        [*wrong_env, "--checkpoint", str(pipeline["policy"]), "--out", str(tmp_path / "x.gif")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode != 0 and "was trained on 'navigate', not 'garbage_sort'" in res.stderr
