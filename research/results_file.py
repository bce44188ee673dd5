"""The ``results.json`` of an experiment driver: one entry per variant, with the arguments it ran with.

A variant already recorded is not run again; one recorded under other arguments is refused, so that a
results file never mixes two settings under one name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from qtransformer.dataset import write_json


def recorded_args(args: Any) -> dict[str, Any]:
    """A run's arguments as results.json holds them (tuples as JSON lists)."""
    return json.loads(json.dumps(dataclasses.asdict(args)))


class ResultsFile:
    """``<out>/results.json``, written atomically after every variant."""

    def __init__(self, out: Path, ignored: tuple[str, ...]) -> None:
        """``ignored``: argument fields that change how a run is watched or stored, not what it learns."""
        self.path = Path(out) / "results.json"
        self.ignored = ignored
        self.results: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def done(self, name: str, args: dict[str, Any]) -> bool:
        """Whether ``name`` is recorded already; a ValueError if it was run with other arguments."""
        if name not in self.results:
            return False
        old = self.results[name]["args"]
        if any(old.get(k) != v for k, v in args.items() if k not in self.ignored):
            raise ValueError(
                f"{self.path} holds {name!r} run with other arguments; use another --out or remove it"
            )
        return True

    def add(self, name: str, entry: dict[str, Any]) -> None:
        self.results[name] = entry
        write_json(self.path, self.results)
