"""Regenerate docs/cli.md from the commands' own ``--help`` (the dataclass field docs).

python scripts/gen_cli_docs.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts.cli import COMMANDS


def main() -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "110", "TERM": "dumb"}
    parts = [
        "# CLI reference",
        "",
        "One command, `qt`, with a subcommand per job. Options come from typed dataclasses; nested configs",
        "use dotted names (`--model.d-model 256`, `--loss.alpha 0.5`, `--optim.lr 1e-4`).",
        "`qt datagen` and `qt finetune` show the recipe of their `--env` (GarbageSort's below); `qt pretrain` shows",
        "its dataset's recipe once `--dataset` is given (below: the dataclass defaults, without a dataset).",
        "Regenerate this page with `python scripts/gen_cli_docs.py`.",
        "",
    ]
    for name, (_, _, _, help_) in COMMANDS.items():
        out = subprocess.run(
            [sys.executable, "-m", "scripts.cli", name, "--help"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        parts += [f"## qt {name}", "", help_, "", "```", out.rstrip(), "```", ""]
    Path("docs/cli.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
