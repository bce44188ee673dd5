"""``qt evaluate`` under the evaluation protocol: splits, report starts, statistics, recorded entries.

The rollouts use a tiny untrained model in the real Navigate env with five-step episodes; the
statistics and the summary file are checked on hand-made outcomes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import envs
from envs import tasks as T
from envs.navigate import STATE_DIM as NAV_STATE_DIM
from finetune.train import EVAL_SEED
from pretrain import evaluate as E
from pretrain.evaluate import EvalArgs, run_evaluate
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer
from qtransformer.returns import ReturnConfig
from scripts.cli import main


def _checkpoint(path: Path, seed: int, meta: dict[str, Any] | None = None) -> str:
    torch.manual_seed(seed)
    model = QTransformer(
        ModelConfig(state_dim=NAV_STATE_DIM, action_dim=3, num_bins=16, d_model=32, n_layers=1)
    )
    bins = ActionBins([-1] * 3, [1] * 3, 16)
    # Five-step episodes: the env settings a checkpoint records are the ones it is evaluated at.
    meta = {"env": "navigate", "env_kwargs": {"max_episode_steps": 5}, **(meta or {})}
    return str(save_policy_checkpoint(path, model, bins, "default", meta, returns=ReturnConfig()))


@pytest.fixture
def seen_seeds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Records (reset seed, task) of every episode the evaluation plays."""
    seen: list[tuple[int, str]] = []
    make_env = envs.make_env

    def recording_make_env(*args: Any, **kwargs: Any) -> Any:
        env = make_env(*args, **kwargs)
        reset = env.reset

        def recording_reset(*, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            seen.append((int(seed), (options or {})["task"]))  # type: ignore[arg-type]
            return reset(seed=seed, options=options)

        env.reset = recording_reset
        return env

    monkeypatch.setattr(envs, "make_env", recording_make_env)
    return seen


def test_wilson_interval_matches_a_hand_computed_case() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71675, half 1.96 * sqrt(0.025604) / 1.38416.
    lo, hi = E.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-4) and hi == pytest.approx(0.9433, abs=5e-4)
    assert E.wilson_interval(0, 20)[0] == 0.0 and E.wilson_interval(20, 20)[1] == 1.0
    assert 0 < E.wilson_interval(0, 20)[1] < 0.2  # never of zero width at the ends
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        E.wilson_interval(3, 2)
    with pytest.raises(ValueError, match="n >= 1"):
        E.wilson_interval(0, 0)


def test_success_stats_mean_over_seeds_spread_pooled_interval_and_steps() -> None:
    stats = E.success_stats(
        [[True, True, False, False], [True, True, True, True]], [[10, 20, 99, 99], [30, 40, 50, 60]]
    )
    assert stats["success_mean"] == 0.75 and stats["success_per_seed"] == [0.5, 1.0]
    assert stats["success_spread"]["min"] == 0.5 and stats["success_spread"]["max"] == 1.0
    assert stats["success_spread"]["std"] == pytest.approx(0.3536, abs=1e-4)
    assert stats["successes"] == 6 and stats["episodes"] == 8
    assert stats["ci95"] == [round(x, 4) for x in E.wilson_interval(6, 8)]
    assert stats["mean_steps_to_success"] == 35.0  # failures' 99 steps left out
    none = E.success_stats([[False, False]], [[5, 5]])
    assert none["mean_steps_to_success"] is None and none["success_spread"]["std"] is None


@pytest.mark.parametrize("name", ["garbage_sort", "navigate"])
def test_splits_are_disjoint_and_tuning_is_the_first_heldout_task(name: str) -> None:
    train, tuning, test = (set(T.split_task_ids(name, s)) for s in T.SPLITS)
    assert not (train & tuning) and not (train & test) and not (tuning & test)
    assert tuning | test == set(T.heldout_task_ids(name)) and train == set(T.train_task_ids(name))
    assert T.split_task_ids(name, "tuning") == (T.heldout_task_ids(name)[0],)
    assert E.task_ids(name, "test") == list(T.heldout_task_ids(name)[1:])
    with pytest.raises(ValueError, match="split must be one of"):
        T.split_task_ids(name, "heldout")


def test_report_starts_never_overlap_the_curve_starts() -> None:
    widest = max(len(T.select_tasks(env, "all")) for env in ("garbage_sort", "navigate"))
    for n_tasks in (1, widest):
        for episodes in (1, E.PROTOCOL_EPISODES, E.MAX_EPISODES):
            seeds = E.report_seeds(n_tasks, episodes)
            # The curve plays EVAL_SEED + e for any e >= 0: disjoint whatever its episode count.
            assert seeds.stop <= EVAL_SEED
            # Pretraining's evaluation blocks (seed 100,000) end before the report starts begin.
            assert 100_000 + E.TASK_SEED_STRIDE * widest <= seeds.start
    for bad in (0, E.MAX_EPISODES + 1):
        with pytest.raises(ValueError, match="episodes must be in"):
            E.report_seeds(1, bad)
        with pytest.raises(ValueError, match="episodes must be in"):
            EvalArgs(checkpoint=("p",), episodes=bad)


def test_evaluate_one_task_from_the_report_starts(tmp_path: Path, seen_seeds: list) -> None:
    ckpt = _checkpoint(tmp_path / "policy", 0)
    res = run_evaluate(EvalArgs(checkpoint=(ckpt,), task="go_to:red_sphere", episodes=2))
    assert res["tasks"] == ["go_to:red_sphere"] and res["split"] == "tuning"
    assert res["episodes"] == 2 and list(res["per_task"]) == ["go_to:red_sphere"]
    assert seen_seeds == [(E.REPORT_SEED, "go_to:red_sphere"), (E.REPORT_SEED + 1, "go_to:red_sphere")]
    assert res["protocol"] is False and len(res["protocol_gaps"]) == 2
    assert res["method"] == "pretrained" and res["observation"] == "state" and res["env_steps"] == 0
    with pytest.raises(ValueError, match="unknown navigate task 'go_to:nowhere'"):
        run_evaluate(EvalArgs(checkpoint=(ckpt,), task="go_to:nowhere", episodes=1))
    with pytest.raises(ValueError, match="is in the tuning split, not test"):
        run_evaluate(EvalArgs(checkpoint=(ckpt,), task="go_to:red_sphere", split="test", episodes=1))


def test_evaluate_a_split_lays_each_task_on_its_own_block(tmp_path: Path, seen_seeds: list) -> None:
    ckpt = _checkpoint(tmp_path / "policy", 0)
    res = run_evaluate(EvalArgs(checkpoint=(ckpt,), split="test", episodes=1))
    test_tasks = list(T.split_task_ids("navigate", "test"))
    assert res["tasks"] == test_tasks and res["episodes"] == len(test_tasks)
    assert seen_seeds == [(E.REPORT_SEED + E.TASK_SEED_STRIDE * i, t) for i, t in enumerate(test_tasks)]


def test_cli_records_an_entry_and_replaces_it_by_name(tmp_path: Path) -> None:
    a = _checkpoint(tmp_path / "a", 0, {"task": "go_to:red_sphere", "env_steps": 300})
    b = _checkpoint(tmp_path / "b", 1, {"task": "go_to:red_sphere", "env_steps": 300})
    summary = tmp_path / "results" / "summary.json"
    argv = ["evaluate", "--checkpoint", a, b, "--task", "go_to:red_sphere", "--episodes", "2"]
    main([*argv, "--record", "nav tuning", "--summary", str(summary)])
    [entry] = json.loads(summary.read_text())
    assert set(E.ENTRY_KEYS) <= set(entry)
    assert entry["name"] == "nav tuning" and entry["env"] == "navigate" and entry["split"] == "tuning"
    assert entry["tasks"] == ["go_to:red_sphere"] and entry["seeds"] == 2 and entry["episodes"] == 4
    assert entry["method"] == "finetuned" and entry["env_steps"] == 300 and entry["observation"] == "state"
    lo, hi = entry["ci95"]
    assert 0 <= lo <= entry["success_mean"] <= hi <= 1
    assert entry["protocol"] is False and "2 training seed(s)" in entry["protocol_gaps"][1]
    assert entry["commit"] is None or len(entry["commit"]) == 40
    assert entry["command"].startswith(
        f"qt evaluate --checkpoint {a} {b} --task go_to:red_sphere --episodes 2"
    )
    assert "--record 'nav tuning'" in entry["command"]
    # Re-recording the name replaces the entry in place; a new name is appended after it.
    main([*argv, "--record", "other", "--summary", str(summary), "--method", "x"])
    main([*argv, "--record", "nav tuning", "--summary", str(summary), "--command", "make it"])
    entries = json.loads(summary.read_text())
    assert [(e["name"], e["command"]) for e in entries] == [
        ("nav tuning", "make it"),
        ("other", entries[1]["command"]),
    ]
    assert entries[1]["method"] == "x"
    assert not [p for p in summary.parent.iterdir() if p.name != "summary.json"]  # no temp file left


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "policy", 0)
    with pytest.raises(ValueError, match="checkpoint 'nowhere' not found"):
        run_evaluate(EvalArgs(checkpoint=(ckpt, "nowhere"), task="go_to:red_sphere", episodes=1))
    with pytest.raises(ValueError, match="lists a directory twice"):
        EvalArgs(checkpoint=(ckpt, ckpt))
    not_a_list = tmp_path / "summary.json"
    not_a_list.write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="must hold a JSON list of entries, found dict"):
        run_evaluate(
            EvalArgs(checkpoint=(ckpt,), task="go_to:red_sphere", record="x", summary=str(not_a_list))
        )
    with pytest.raises(SystemExit):  # tyro rejects a split that does not exist
        main(["evaluate", "--checkpoint", ckpt, "--split", "heldout"])
    with pytest.raises(ValueError, match="summary entry lacks"):
        E.record_entry(tmp_path / "s.json", {"name": "x"})


def test_finetuned_checkpoints_are_each_scored_on_their_own_task(tmp_path: Path, seen_seeds: list) -> None:
    test_tasks = list(T.split_task_ids("navigate", "test"))
    # Seed 1's checkpoints listed in the reverse task order: the task comes from each checkpoint, not
    # from its place in the list. Runs of one budget stop a few env steps apart.
    order = {0: test_tasks, 1: test_tasks[::-1]}
    ckpts = [
        _checkpoint(
            tmp_path / f"{t}_{s}".replace(":", "_"),
            s,
            {"task": t, "seed": s, "env_steps": 300 + i, "env_steps_budget": 300},
        )
        for s in range(2)
        for i, t in enumerate(order[s])
    ]
    res = run_evaluate(EvalArgs(checkpoint=tuple(ckpts), split="test", episodes=2))
    assert res["each_checkpoint_on_its_own_task"] is True and res["env_steps"] == 300
    assert res["seeds"] == 2 and res["episodes"] == 2 * 2 * len(test_tasks)
    # Each task on its own block of report starts, played once per seed by that task's checkpoint only.
    block = {t: E.REPORT_SEED + E.TASK_SEED_STRIDE * i for i, t in enumerate(test_tasks)}
    expected = [(block[t] + e, t) for s in range(2) for t in order[s] for e in range(2)]
    assert seen_seeds == expected
    assert all(r["episodes"] == 4 for r in res["per_task"].values())


def test_own_task_rule_refuses_mixed_uneven_or_misordered_checkpoints() -> None:
    tasks = ["a", "b"]
    assert E.own_task_checkpoints(["a", "b", "b", "a"], tasks, "test") == ["a", "b", "b", "a"]
    assert E.own_task_checkpoints([None, None], tasks, "test") is None  # pretrained: every task
    assert E.own_task_checkpoints(["c", "c"], tasks, "train") is None  # fine-tuned elsewhere: every task
    assert E.own_task_checkpoints(["a"], ["a"], "tuning") is None  # one task: nothing to choose
    with pytest.raises(ValueError, match="same number of fine-tuned checkpoints"):
        E.own_task_checkpoints(["a", "a", "b"], tasks, "test")
    with pytest.raises(ValueError, match="others not"):
        E.own_task_checkpoints(["a", None], tasks, "test")
    with pytest.raises(ValueError, match="others not"):  # also on a one-task split
        E.own_task_checkpoints(["a", "b"], ["a"], "tuning")
    E.check_seed_order(["a", "b", "b", "a"], [0, 0, 1, 1])
    E.check_seed_order(["a", "b", "a", "b"], [None, None, None, None])  # unrecorded: listing order
    with pytest.raises(ValueError, match="same training-seed order"):
        E.check_seed_order(["a", "b", "a", "b"], [0, 1, 1, 0])


def test_the_protocol_counts_the_episodes_behind_each_seeds_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scaled down: with a size of 8 episodes, the 4 test tasks x 2 episodes make a seed's rate; 1 each
    # (4) does not, as 20 pretraining tasks x 4 (80) do not make the real 100.
    monkeypatch.setattr(E, "PROTOCOL_EPISODES", 8)
    monkeypatch.setattr(E, "PROTOCOL_SEEDS", 1)
    ckpt = _checkpoint(tmp_path / "s0", 0)
    full = run_evaluate(EvalArgs(checkpoint=(ckpt,), split="test", episodes=2))
    assert full["protocol"] is True and full["protocol_gaps"] == [] and full["episodes"] == 8
    short = run_evaluate(EvalArgs(checkpoint=(ckpt,), split="test", episodes=1))
    assert short["protocol"] is False
    assert short["protocol_gaps"] == [
        "4 episodes per seed (1 per task; the protocol asks for >= 8 behind each rate)"
    ]
