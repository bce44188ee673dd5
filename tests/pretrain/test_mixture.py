"""The robot-team mixture: its sources are what docs/dataset-format.md says, with the success it says."""

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from envs import make_env, make_expert
from envs.experts import GARBAGE_TYPICAL_STEPS
from pretrain.datagen import DatagenArgs, _rollout, quality_of, run_datagen
from scripts.recipes import cli_defaults, datagen_args, dataset_recipe, get_recipe

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataset-format.md"


def _documented_shares(recipe: str) -> dict[str, float]:
    """``quality`` -> share from the dataset docs' table of ``recipe``'s sources."""
    table = DOC.read_text().split(f"The `{recipe}` recipe's sources", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| [^|]+ \| `(\w+)` \| (\d+)% \|", table, flags=re.M)
    return {q: int(p) / 100 for q, p in rows}


@pytest.mark.parametrize("recipe", ["navigate_mixed", "garbage_sort_mixed"])
def test_the_documented_shares_are_the_recipes(recipe: str) -> None:
    args = datagen_args(recipe)
    shares = {"expert": args.expert_frac, "noisy": args.noisy_frac}
    assert _documented_shares(recipe) == shares | {"halted": args.halted_frac, "failed": args.failed_frac}


def test_the_mixed_recipe_has_the_documented_shares_and_outcomes(tmp_path: Path) -> None:
    args = datagen_args("navigate_mixed", out=tmp_path / "d", episodes=40, workers=1)
    shares = {"expert": args.expert_frac, "noisy": args.noisy_frac}
    shares |= {"halted": args.halted_frac, "failed": args.failed_frac}
    assert _documented_shares("navigate_mixed") == shares
    run_datagen(args)
    eps = pq.read_table(tmp_path / "d" / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    counts = {q: sum(e["quality"] == q for e in eps) for q in shares}
    for q, share in shares.items():  # every prefix follows the shares (a low-discrepancy sequence)
        assert abs(counts[q] - share * len(eps)) <= 1.5, (q, counts)
    assert [e["quality"] for e in eps] == [quality_of(i, args) for i in range(len(eps))]
    by = {q: [e["success"] for e in eps if e["quality"] == q] for q in shares}
    assert all(by["expert"]) and not any(by["halted"]) and not any(by["failed"])
    assert 0 < np.mean(by["noisy"]) < 1  # weak attempts that still sometimes succeed
    # Stalls stand still until the time limit; qt pretrain on this data picks the same recipe.
    limit = round(6.0 * args.control_hz)
    assert all(e["length"] == limit for e in eps if e["quality"] == "halted")
    assert dataset_recipe(str(tmp_path / "d")) == "navigate_mixed"
    defaults = cli_defaults("pretrain", ["--dataset", str(tmp_path / "d")])
    assert defaults.recipe == "navigate_mixed" and defaults.steps == 6000
    assert json.loads((tmp_path / "d" / "meta" / "datagen.json").read_text())["halted_frac"] == 0.2


def test_a_halting_expert_acts_cleanly_then_stands_still() -> None:
    env = make_env("navigate", control_hz=4.0)
    clean = _rollout(env, make_expert(env, seed=3), 11, "navigate", "expert", True)
    halted = _rollout(env, make_expert(env, seed=3, halt=(0.5, 0.5)), 11, "navigate", "halted", True)
    env.close()
    moving = int(np.abs(halted.action).sum(1).astype(bool).sum())
    assert 1 <= moving < len(clean.action)  # about half of the clean path
    np.testing.assert_allclose(halted.action[:moving], clean.action[:moving])
    np.testing.assert_array_equal(halted.action[moving:], 0.0)
    assert not halted.success and len(halted.action) == env.spec.max_episode_steps
    with pytest.raises(ValueError, match="halt must be a range"):
        make_expert(env, halt=(0.8, 0.2))


def test_scale_multiplies_the_size_and_old_datasets_still_resume(tmp_path: Path) -> None:
    assert DatagenArgs(env="navigate", episodes=30, scale=10).plan()["episodes"] == 300
    assert DatagenArgs(env="navigate", transitions=1000, scale=2.5).plan()["transitions"] == 2500
    with pytest.raises(ValueError, match="scale must be"):
        DatagenArgs(env="navigate", scale=0)
    with pytest.raises(ValueError, match="sum to 1"):
        DatagenArgs(env="navigate", halted_frac=0.2)
    # A dataset recorded before the mixture's fields existed is the same dataset at their defaults.
    args = DatagenArgs(env="navigate", out=tmp_path / "d", preset="tiny", workers=1)
    run_datagen(args)
    record = tmp_path / "d" / "meta" / "datagen.json"
    old = {
        k: v for k, v in json.loads(record.read_text()).items() if k not in ("halted_frac", "halt", "scale")
    }
    record.write_text(json.dumps(old))
    assert run_datagen(args) == tmp_path / "d"
    with pytest.raises(ValueError, match="different arguments"):
        run_datagen(DatagenArgs(env="navigate", out=tmp_path / "d", preset="tiny", workers=1, scale=2))
    assert get_recipe("navigate_mixed").env == "navigate"


def test_a_stalled_arm_keeps_its_grip() -> None:
    env = make_env("garbage_sort")
    expert = make_expert(env, seed=0, halt=(0.5, 0.5))
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(30):
        actions.append(expert.act(obs))
        obs, *_ = env.step(actions[-1])
    env.close()
    stall = expert.halt_step
    assert stall == round(0.5 * GARBAGE_TYPICAL_STEPS)
    for a in actions[stall:]:
        np.testing.assert_array_equal(a[:3], 0.0)  # no motion
        assert a[3] == actions[stall - 1][3]  # the gripper command stays where it was
