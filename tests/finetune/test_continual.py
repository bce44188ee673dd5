"""Continual learning (``qt finetune --tasks``): stage bookkeeping, the replay of earlier practice within
its budget, the forgetting matrix, and a resume mid-sequence after SIGKILL, on the fake reaching world."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from finetune.builder import earlier_practice
from finetune.continual import PRETRAINING, ContinualConfig, forgetting_matrix, stage_dir
from finetune.replay import EpisodeReplay, mixed_sample
from finetune.store import EpisodeStore
from finetune.train import FinetuneArgs, run_finetune
from qtransformer import batch as K
from qtransformer.returns import ReturnConfig
from tests.finetune.helpers import make_episode
from tests.finetune.test_finetune import FAKE, _args, pretrained  # noqa: F401  (the module fixture)

SEQUENCE = ("go_middle", "go_left")


def _continual(pretrained: dict[str, Path], out: Path, **kw) -> FinetuneArgs:  # noqa: F811
    base = dict(
        tasks=SEQUENCE,
        env_steps=150,
        eval_episodes=0,
        continual=ContinualConfig(eval_episodes=4, pretrain_eval_episodes=2),
    )
    base.update(kw)
    return _args(pretrained, out, **base)


def test_stages_chain_and_the_matrix_covers_every_task_after_every_stage(pretrained, tmp_path):  # noqa: F811
    out = tmp_path / "seq"
    state = run_finetune(_continual(pretrained, out), env_module=FAKE)
    assert state["stages_done"] == 2 and [r["stage"] for r in state["rows"]] == [0, 1, 2]
    s1 = json.loads((stage_dir(out, 1, "go_middle") / "summary.json").read_text())
    s2 = json.loads((stage_dir(out, 2, "go_left") / "summary.json").read_text())
    assert s1["task"] == "go_middle" and s2["task"] == "go_left"
    # Stage 2 replays every episode stage 1 practised (the budget does not bind here), stage 1 none.
    assert s1["earlier_practice_episodes"] == 0
    assert s2["earlier_practice_episodes"] == s1["episodes"] > 0
    m = json.loads((out / "matrix.json").read_text())
    assert m["rows"] == ["go_middle", "go_left", PRETRAINING]
    assert m["columns"] == ["pretrained", "after go_middle", "after go_left"]
    assert all(len(r) == 3 and all(v is not None for v in r) for r in m["success"])
    row = state["rows"][2]
    # go_left, a pretraining task practised here, has its own row, with its own episodes.
    assert len(row["successes"]["go_middle"]) == len(row["successes"]["go_left"]) == 4
    assert len(row["successes"]["go_right"]) == 2
    assert row["policy"] == str(stage_dir(out, 2, "go_left") / "policy")
    assert (out / "matrix.png").stat().st_size > 1000
    # The run's settings are checked on --resume; a finished run is not run again.
    with pytest.raises(ValueError, match="pass --resume"):
        run_finetune(_continual(pretrained, out), env_module=FAKE)
    with pytest.raises(ValueError, match="env_steps_per_stage"):
        run_finetune(_continual(pretrained, out, env_steps=300, resume=True), env_module=FAKE)
    with pytest.raises(ValueError, match="other practice settings.*utd"):
        run_finetune(_continual(pretrained, out, utd=1.0, resume=True), env_module=FAKE)
    stages = [stage_dir(out, k, t) for k, t in enumerate(SEQUENCE, start=1)]
    before = [
        ((d / "summary.json").read_text(), (d / "policy" / "model.safetensors").stat().st_mtime_ns)
        for d in stages
    ]
    again = run_finetune(_continual(pretrained, out, resume=True), env_module=FAKE)
    assert again["rows"] == json.loads(json.dumps(state["rows"]))
    after = [
        ((d / "summary.json").read_text(), (d / "policy" / "model.safetensors").stat().st_mtime_ns)
        for d in stages
    ]
    assert after == before  # no stage ran again


def test_naive_sequence_replays_no_earlier_practice(pretrained, tmp_path):  # noqa: F811
    out = tmp_path / "naive"
    run_finetune(
        _continual(
            pretrained,
            out,
            tasks=SEQUENCE,
            continual=ContinualConfig(replay="off", eval_episodes=1, pretrain_eval_episodes=0),
        ),
        env_module=FAKE,
    )
    s2 = json.loads((stage_dir(out, 2, "go_left") / "summary.json").read_text())
    assert s2["earlier_practice_episodes"] == 0
    m = json.loads((out / "matrix.json").read_text())
    assert PRETRAINING not in m["rows"]  # not evaluated: no row for it


def test_bad_sequences_are_refused(pretrained, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="twice"):
        run_finetune(_continual(pretrained, tmp_path / "a", tasks=("go_left", "go_left")), env_module=FAKE)
    with pytest.raises(ValueError, match="not tasks of"):
        run_finetune(_continual(pretrained, tmp_path / "b", tasks=("go_up",)), env_module=FAKE)
    with pytest.raises(ValueError, match="not both"):
        _continual(pretrained, tmp_path / "c", task="go_left")
    with pytest.raises(ValueError, match="without --init scratch"):
        run_finetune(_continual(pretrained, tmp_path / "d", init="scratch"), env_module=FAKE)
    with pytest.raises(ValueError, match="budget"):
        ContinualConfig(budget=0)


def _store(root: Path, lengths: list[int]) -> Path:
    store = EpisodeStore(root / "episodes")
    for i, T in enumerate(lengths):
        store.append(make_episode(T=T, seed=i, instruction=f"{root.name} {i}"))
    return root


def test_the_replay_budget_is_shared_equally_and_keeps_each_runs_latest_episodes(tmp_path):
    a = _store(tmp_path / "a", [5, 5, 5, 5])
    b = _store(tmp_path / "b", [3, 4, 6])
    kept = list(earlier_practice([a, b], budget=22))  # 11 transitions each
    assert [e.instruction for e in kept] == ["a 2", "a 3", "b 1", "b 2"]  # b: 6 + 4 fits, + 3 does not
    everything = list(earlier_practice([a, b], budget=1000))
    assert [len(e) for e in everything] == [5, 5, 5, 5, 3, 4, 6]
    with pytest.raises(ValueError, match="no episodes/"):
        list(earlier_practice([tmp_path / "missing"], budget=10))


def test_earlier_practice_is_sampled_as_practice_unless_kept_as_data():
    returns = ReturnConfig()
    rng = np.random.default_rng(0)
    for practice in (True, False):
        offline, online = EpisodeReplay(returns), EpisodeReplay(returns)
        offline.add(make_episode(T=6, instruction="prior", seed=1))
        offline.add(make_episode(T=6, instruction="earlier", seed=2), practice=practice)
        online.add(make_episode(T=6, instruction="now", seed=3))
        d = mixed_sample(offline, online, 256, 0.5, rng)
        flags = dict(zip(d[K.INSTRUCTION], d[K.ONLINE].tolist()))
        assert flags == {"prior": False, "earlier": practice, "now": True}


def test_forgetting_matrix_against_hand_computed_rates():
    state = {
        "tasks": ["a", "b"],
        "continual": {"eval_episodes": 4, "pretrain_eval_episodes": 2},
        "rows": [
            {"stage": 2, "successes": {"a": [1, 1, 0, 0], "b": [1, 1, 1, 1], "p": [1, 0], "q": [1, 1]}},
            {"stage": 0, "successes": {"a": [0, 0, 0, 0], "b": [0, 0, 0, 1], "p": [1, 1], "q": [1, 1]}},
            {"stage": 1, "successes": {"a": [1, 1, 1, 1], "b": [0, 0, 1, 1], "p": [1, 1], "q": [1, 0]}},
        ],
    }
    m = forgetting_matrix(state, ["p", "q"])
    assert m["columns"] == ["pretrained", "after a", "after b"]
    assert m["success"] == [[0.0, 1.0, 0.5], [0.25, 0.5, 1.0], [1.0, 0.75, 0.75]]
    assert m["retained"] == {"a": 0.5, "b": 1.0, PRETRAINING: 0.75}
    partial = forgetting_matrix({**state, "rows": state["rows"][1:2]}, ["p", "q"])
    assert partial["columns"] == ["pretrained"] and partial["retained"] == {}


@pytest.mark.slow
def test_sigkill_in_the_second_stage_then_resume_finishes_without_redoing_the_first(pretrained, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from pathlib import Path
        from tests.finetune.test_continual import _continual, FAKE
        from finetune.train import run_finetune
        paths = {{"policy": Path({str(pretrained["policy"])!r}), "data": Path({str(pretrained["data"])!r})}}
        run_finetune(_continual(paths, Path({str(out)!r}), env_steps=300, resume="--resume" in sys.argv),
                     env_module=FAKE)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = stage_dir(out, 2, "go_left") / "episodes"
    deadline = time.monotonic() + 900  # a generous bound for a loaded machine, not a timing assertion
    while len(list(second.glob("ep_*.npz"))) < 5 if second.exists() else True:
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    first = stage_dir(out, 1, "go_middle")
    first_summary = (first / "summary.json").read_text()
    first_episodes = len(list((first / "episodes").glob("ep_*.npz")))
    kept = [e.state for e in EpisodeStore(second).load_all()]
    res = subprocess.run(
        [sys.executable, "-c", script, "--resume"], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-2000:]
    state = json.loads((out / "continual.json").read_text())
    assert state["stages_done"] == 2 and [r["stage"] for r in state["rows"]] == [0, 1, 2]
    assert (first / "summary.json").read_text() == first_summary  # stage 1 was not run again
    assert len(list((first / "episodes").glob("ep_*.npz"))) == first_episodes
    after = EpisodeStore(second).load_all()
    assert len(after) > len(kept) and all((a.state == b).all() for a, b in zip(after, kept))
    assert json.loads((second.parent / "summary.json").read_text())["env_steps"] >= 300


def test_a_behaviour_cloning_policy_is_refused_as_a_start(pretrained, tmp_path):  # noqa: F811
    bc = tmp_path / "bc_policy"
    shutil.copytree(pretrained["policy"], bc)
    config = json.loads((bc / "config.json").read_text())
    config["meta"]["method"] = "bc"
    (bc / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="behaviour-cloning policy"):
        run_finetune(
            dataclasses.replace(_args(pretrained, tmp_path / "ft"), pretrained=str(bc)), env_module=FAKE
        )
    # A sequence refuses it before scoring anything.
    with pytest.raises(ValueError, match="behaviour-cloning policy"):
        run_finetune(
            dataclasses.replace(_continual(pretrained, tmp_path / "seq"), pretrained=str(bc)), env_module=FAKE
        )
    assert not (tmp_path / "seq" / "continual.json").exists()
