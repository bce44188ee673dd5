"""docs/results.md's tables are generated from docs/results/summary.json (scripts/results_table.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pretrain.evaluate import load_summary
from scripts import results_table as R

ROOT = Path(__file__).resolve().parents[1]


def _entry(name: str, **overrides: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "env": "navigate",
        "tasks": ["go_to:blue_cone", "go_to:green_pillar"],
        "split": "test",
        "method": "finetuned",
        "observation": "state",
        "env_steps": 20000,
        "seeds": 3,
        "episodes": 600,
        "success_mean": 0.9,
        "success_spread": {"min": 0.85, "max": 0.95, "std": 0.05},
        "ci95": [0.8736, 0.921],
        "mean_steps_to_success": 41.25,
        "protocol": True,
        "protocol_gaps": [],
        "command": "qt evaluate --checkpoint a b c --split test",
        "commit": "0123456789abcdef0123456789abcdef01234567",
    }
    return {**entry, **overrides}


def test_two_entries_render_as_one_table_with_notes(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    anecdote = _entry(
        "zero-shot",
        tasks=["go_to:red_sphere"],
        split="tuning",
        method="pretrained",
        env_steps=0,
        seeds=1,
        episodes=40,
        success_mean=0.825,
        ci95=[0.6805, 0.9125],
        mean_steps_to_success=None,
        protocol=False,
        protocol_gaps=["40 episodes"],
        oracle=True,
        command="a | b",
    )
    summary.write_text(json.dumps([_entry("full"), anecdote]))
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\nintro\n\n{R.BEGIN}\nstale text\n{R.END}\n\nfooter\n")
    assert R.run_table(R.TableArgs(summary=str(summary), page=str(page), check=True)) is False
    assert R.run_table(R.TableArgs(summary=str(summary), page=str(page)))
    text = page.read_text()
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith(f"{R.END}\n\nfooter\n")
    assert "stale text" not in text and text.count("### Navigate") == 1
    lines = text.splitlines()
    header = lines.index("| " + " | ".join(R.COLUMNS) + " |")
    assert lines[header + 2] == (
        "| full | test | `go_to:blue_cone`, `go_to:green_pillar` | finetuned, 20,000 env steps | state | 3 | "
        "600 | **90.0%** [87.4, 92.1]; seeds 85.0%-95.0% | 41.2 | yes | "
        "`qt evaluate --checkpoint a b c --split test` |"
    )
    assert lines[header + 3] == (
        "| zero-shot | tuning | `go_to:red_sphere` | pretrained, zero-shot | state (oracle) | 1 | 40 | "
        "**82.5%** [68.0, 91.2] | - | no | `a \\| b` |"
    )
    assert "- **zero-shot**: Not the protocol: 40 episodes. Commit `0123456789`." in lines
    assert R.run_table(R.TableArgs(summary=str(summary), page=str(page), check=True))


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks the marker lines"):
        R.update_page("# Results\n", [])
    with pytest.raises(ValueError, match=r"entry 0 \('x'\) lacks \['env'"):
        R.render_tables([{"name": "x"}])


def test_committed_page_is_what_the_committed_summary_gives() -> None:
    page = (ROOT / R.PAGE_PATH).read_text()
    assert R.update_page(page, load_summary(ROOT / "docs/results/summary.json")) == page, (
        "docs/results.md is out of date: run python -m scripts.results_table"
    )


def test_an_entry_over_several_tasks_lists_each_task_under_the_table() -> None:
    per_task = {
        "go_to:blue_cone": {"success_mean": 0.5733, "ci95": [0.5169, 0.6279]},
        "go_to:green_pillar": {"success_mean": 0.96, "ci95": [0.931, 0.9771]},
    }
    text = R.render_tables(
        [_entry("full", per_task=per_task), _entry("one", per_task={"a": per_task["go_to:blue_cone"]})]
    )
    lines = text.splitlines()
    full = next(line for line in lines if line.startswith("- **full**"))
    assert "Per task: `go_to:blue_cone` 57.3% [51.7, 62.8], `go_to:green_pillar` 96.0% [93.1, 97.7]." in full
    assert not any("Per task" in line for line in lines if line.startswith("- **one**"))
    many = {f"t{i}": {"success_mean": i / 10, "ci95": [0.0, 1.0]} for i in range(8, 0, -1)}
    [line] = [n for n in R.render_tables([_entry("train", per_task=many)]).splitlines() if "- **train**" in n]
    assert "Weakest 6 of 8 tasks: `t1` 10.0%" in line and "`t6` 60.0%" in line and "`t7`" not in line


def test_a_benchmark_entry_names_it_and_lists_its_difficulty_groups() -> None:
    per_group = {
        "easy": {"success_mean": 0.99, "ci95": [0.97, 1.0]},
        "very_hard": {"success_mean": 0.4, "ci95": [0.3, 0.5]},
    }
    e = _entry("mt10", env="metaworld", benchmark="metaworld_mt10", tasks=["a", "b", "c", "d"])
    text = R.render_tables([_entry("nav"), {**e, "per_group": per_group}])
    assert text.index("### Navigate") < text.index("### Meta-World")
    assert "| mt10 | test | metaworld_mt10: 4 tasks |" in text
    assert "By difficulty: easy 99.0% [97.0, 100.0], very hard 40.0% [30.0, 50.0]." in text
