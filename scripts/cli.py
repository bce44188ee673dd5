"""``qt``: the one command-line entry point. ``qt <command> --help`` lists every field with its doc.

Each command is an arguments dataclass plus a ``run`` function in its own package; the module is
imported only when its command runs, so ``qt serve`` never imports training code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

# name -> (module, arguments dataclass, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "datagen": (
        "pretrain.datagen",
        "DatagenArgs",
        "run_datagen",
        "generate a multi-task episode dataset from the scripted experts",
    ),
    "pretrain": (
        "pretrain.train",
        "PretrainArgs",
        "run_pretrain",
        "offline pretraining with conservative Q-learning (Accelerate)",
    ),
    "evaluate": (
        "pretrain.evaluate",
        "EvalArgs",
        "run_evaluate",
        "roll out a checkpoint's greedy policy and report success per task",
    ),
    "finetune": ("finetune.train", "FinetuneArgs", "run_finetune", "online fine-tuning on a new instruction"),
    "actor": (
        "finetune.remote",
        "ActorArgs",
        "run_actor",
        "collect practice episodes for a learner elsewhere (qt finetune --listen)",
    ),
    "serve": (
        "qtransformer.serving.server",
        "ServeArgs",
        "run_serve",
        "serve a checkpoint to robots over websockets",
    ),
    "demo": (
        "scripts.demo",
        "DemoArgs",
        "run_demo",
        "datagen -> pretrain -> evaluate -> fine-tune -> evaluate, with a report",
    ),
}


RECIPE_COMMANDS = ("datagen", "pretrain", "finetune")
"""Commands whose defaults are a recipe (``scripts/recipes.py``)."""


def _usage() -> str:
    lines = ["usage: qt <command> [--help] [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def parse_args(name: str, argv: list[str]) -> Any:
    """The arguments dataclass of ``qt <name> argv``, parsed against the command's recipe defaults."""
    import tyro

    module_name, args_name, _, help_ = COMMANDS[name]
    args_cls = getattr(importlib.import_module(module_name), args_name)
    default = None
    if name in RECIPE_COMMANDS:
        from scripts.recipes import cli_defaults

        # The recipe of the env (or --recipe) is the default that the command line is parsed against.
        default = cli_defaults(name, argv)
    return tyro.cli(args_cls, args=argv, prog=f"qt {name}", description=help_, default=default)


def main(argv: list[str] | None = None) -> None:
    """Run one command. Returns None: the console script passes the return value to ``sys.exit``, where
    anything else (a command's path or summary) would print it and end with exit status 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return None
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"qt: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    args = parse_args(name, rest)
    module_name, _, run_name, _ = COMMANDS[name]
    getattr(importlib.import_module(module_name), run_name)(args)


if __name__ == "__main__":
    main()
