"""research/finetune_curves.py: the collapse check and the steps to 50% / 90%, on hand-made curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research import finetune_curves as F


def _curve(points: list[tuple[int, float]]) -> list[dict[str, float]]:
    return [{"env_steps": s, "success_rate": r} for s, r in points]


def test_summary_of_one_curve_by_hand() -> None:
    got = F.summarise(_curve([(0, 0.6), (2010, 0.45), (4003, 0.55), (6000, 0.9)]), settle=2000)
    assert got["zero_shot"] == 0.6 and got["last"] == 0.9 and got["last_env_steps"] == 6000
    assert got["lowest_after_settle"] == 0.45 and got["drop_below_zero_shot"] == 0.15  # a collapse
    assert got["steps_to_50"] == 0 and got["steps_to_90"] == 6000
    never = F.summarise(_curve([(0, 0.2), (2000, 0.3)]), settle=2000)
    assert never["steps_to_50"] is None and never["steps_to_90"] is None
    with pytest.raises(ValueError, match="zero-shot point"):
        F.summarise(_curve([(100, 0.5)]), settle=2000)


def test_runs_are_read_per_task_and_seed(tmp_path: Path) -> None:
    for name, pts in (("go_to_red_sphere_s0", [(0, 0.5), (2000, 1.0)]), ("go_to_blue_cone_s1", [(0, 0.2)])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "curve.json").write_text(json.dumps(_curve(pts)))
    (tmp_path / "go_to_red_sphere_s0.log").write_text("")  # not a run directory
    out = F.main(["--runs", str(tmp_path), "--png", str(tmp_path / "c.png")])
    assert set(out) == {"go_to:red_sphere", "go_to:blue_cone"}
    assert (
        out["go_to:red_sphere"]["last_mean"] == 1.0 and out["go_to:blue_cone"]["seeds"][1]["zero_shot"] == 0.2
    )
    assert (tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(ValueError, match="spelled 'go_nowhere'"):
        F.task_of("go_nowhere")
