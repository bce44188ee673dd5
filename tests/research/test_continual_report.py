"""research.continual_report: the seeds' matrices averaged cell by cell, and the entries' episodes taken
from the right row (a task's own stage, the last stage, the pretrained policy)."""

from __future__ import annotations

import json

from research.continual_report import ReportArgs, report


def _state(seed: int, own: list[bool], last: list[bool], replay: str = "practice") -> dict:
    """Two new tasks a, b and one pretraining task p; 2 episodes per cell."""
    z = [False, False]

    def row(stage: int, a: list[bool], b: list[bool], p: list[bool]) -> dict:
        cells = {"a": a, "b": b, "p": p}
        return {"stage": stage, "successes": cells, "lengths": {k: [10] * len(v) for k, v in cells.items()}}

    return {
        "env": "navigate",
        "tasks": ["a", "b"],
        "seed": seed,
        "continual": {"replay": replay, "eval_episodes": 2, "pretrain_eval_episodes": 2},
        "stages_done": 2,
        "rows": [
            row(0, z, z, [True, True]),
            row(1, own, z, [True, False]),
            row(2, last, [True, True], [True, False]),
        ],
    }


def test_report_averages_seeds_and_records_each_row(tmp_path):
    root = tmp_path / "continual_100"
    for seed, own, last in ((0, [True, True], [True, False]), (1, [True, False], [True, False])):
        d = root / f"practice_s{seed}"
        d.mkdir(parents=True)
        (d / "continual.json").write_text(json.dumps(_state(seed, own, last)))
    other = root / "practice_support_s0"  # another variant, whose name starts like this one's
    other.mkdir()
    (other / "continual.json").write_text(
        json.dumps(_state(0, [False, False], [False, False], "practice+support"))
    )
    unfinished = root / "practice_s2"
    unfinished.mkdir()
    (unfinished / "continual.json").write_text(json.dumps({**_state(2, [True], [True]), "stages_done": 1}))
    summary = tmp_path / "summary.json"
    args = ReportArgs(
        runs=str(tmp_path),
        env_steps=100,
        variants=("practice",),
        summary=str(summary),
        img_dir=str(tmp_path),
        json_dir=str(tmp_path),
        command="cmd",
    )
    out = report(args)
    m = json.loads((tmp_path / "navigate_continual_practice.json").read_text())
    assert m["seeds"] == [0, 1]  # the unfinished seed and the other variant are left out
    assert m["rows"] == ["a", "b", "pretraining"]
    assert m["success"][0] == [0.0, 0.75, 0.5] and m["success"][2] == [1.0, 0.5, 0.5]
    assert m["retained"]["a"] == (0.5 + 1.0) / 2  # seed 0: 0.5 / 1, seed 1: 0.5 / 0.5
    assert (tmp_path / "navigate_continual_practice.png").stat().st_size > 1000
    entries = {e["name"]: e for e in json.loads(summary.read_text())}
    assert set(entries) == {*out["practice"]["entries"], out["pretrained"]}
    own = entries["continual-navigate-practice-own-stage"]
    assert own["successes"] == 3 + 4 and own["episodes"] == 8 and own["split"] == "test"
    final = entries["continual-navigate-practice-final-new"]
    assert final["successes"] == 2 + 4 and final["env_steps"] == 200
    assert entries["continual-navigate-practice-final-pretraining"]["success_mean"] == 0.5
    assert entries["continual-navigate-pretrained-pretraining"]["success_mean"] == 1.0
    assert not own["protocol"] and own["oracle"] and own["command"] == "cmd"
