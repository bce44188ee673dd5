"""Task ids, instruction templates, paraphrase splits, held-out tasks and the reset-free task graph.

Everything an experiment needs to know about *which* tasks exist lives here as plain data, so
pretraining, fine-tuning and the docs (docs/envs.md) all read the same lists.

Task ids
--------
GarbageSort (``garbage_sort``):
  ``sort:<kind>``           put the object into its correct bin (templates may or may not name the bin)
  ``throw_away:<kind>``     trash kinds only: "throw away the wrapper"
  ``place:<kind>:<bin>``    pick-and-place of a named object into a named bin (any bin)
  ``sort_all``              sort every object on the table
  ``unplace:<kind>``        undo: take the object out of its bin and put it on the table
Navigate (``navigate``):
  ``go_to:<colour>_<shape>`` drive to the named landmark

Paraphrases of every task family are split into a TRAIN list and a HELD-OUT list, so success on
unseen phrasings can be measured (``paraphrases="heldout"``). HELD-OUT TASKS are object/bin pairs and
landmarks never used for pretraining; they exist for online fine-tuning (``tasks="heldout"``).
For evaluation they are split further (``split_task_ids``): one *tuning* task that settings are chosen
on and the *test* tasks that are only run for what is reported.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- GarbageSort vocabulary
OBJECT_KINDS: tuple[str, ...] = ("can", "bottle", "banana_peel", "apple_core", "wrapper", "cup")
BINS: tuple[str, ...] = ("recycling", "compost", "trash")
CATEGORY: dict[str, str] = {
    "can": "recycling",
    "bottle": "recycling",
    "banana_peel": "compost",
    "apple_core": "compost",
    "wrapper": "trash",
    "cup": "trash",
}
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.35, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (1.0, 0.5, 0.05),
    "purple": (0.55, 0.2, 0.75),
    "white": (0.95, 0.95, 0.95),
    "brown": (0.45, 0.28, 0.12),
    "silver": (0.65, 0.67, 0.7),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
# Plausible colours per kind; the colour is drawn from these per episode and named in the instruction.
KIND_COLOURS: dict[str, tuple[str, ...]] = {
    "can": ("red", "silver", "blue", "green"),
    "bottle": ("green", "blue", "white"),
    "banana_peel": ("yellow", "brown"),
    "apple_core": ("red", "green", "brown"),
    "wrapper": ("orange", "purple", "red", "blue"),
    "cup": ("white", "red", "blue"),
}

# ---------------------------------------------------------------- GarbageSort templates
# {obj} is "<colour> <kind name>", {bin} a bin name. Index 0.. of TRAIN, then HELD-OUT.
GARBAGE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "sort": {
        "train": (
            "put the {obj} in the {bin} bin",
            "sort the {obj}",
            "put the {obj} where it belongs",
            "place the {obj} in the correct bin",
        ),
        "heldout": (
            "the {obj} goes in the {bin} bin",
            "could you sort the {obj} into the right bin",
        ),
    },
    "throw_away": {
        "train": ("throw away the {obj}", "throw the {obj} in the trash", "dispose of the {obj}"),
        "heldout": ("get rid of the {obj}", "bin the {obj} with the rest of the trash"),
    },
    "place": {
        "train": (
            "put the {obj} in the {bin} bin",
            "place the {obj} into the {bin} bin",
            "move the {obj} to the {bin} bin",
            "pick up the {obj} and drop it in the {bin} bin",
        ),
        "heldout": ("the {obj} should go into the {bin} bin", "transfer the {obj} to the {bin} bin"),
    },
    "sort_all": {
        "train": ("sort the objects on the table", "clean up the table", "sort all the garbage"),
        "heldout": ("put every item on the table into its bin", "tidy the table by sorting everything"),
    },
    "unplace": {
        "train": (
            "take the {obj} out of the bin and put it on the table",
            "remove the {obj} from the {bin} bin",
            "take the {obj} out of the {bin} bin",
        ),
        "heldout": ("fish the {obj} out of the bin", "put the {obj} from the {bin} bin back on the table"),
    },
}

# ---------------------------------------------------------------- Navigate vocabulary and templates
LANDMARK_SHAPES: tuple[str, ...] = ("cone", "box", "cylinder", "sphere", "pillar")
LANDMARK_COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple")
NAVIGATE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "go_to": {
        "train": (
            "go to the {landmark}",
            "drive to the {landmark}",
            "navigate to the {landmark}",
            "move next to the {landmark}",
        ),
        "heldout": ("make your way over to the {landmark}", "find the {landmark} and stop beside it"),
    }
}


def _garbage_task_ids() -> list[str]:
    ids = [f"sort:{k}" for k in OBJECT_KINDS]
    ids += [f"throw_away:{k}" for k in OBJECT_KINDS if CATEGORY[k] == "trash"]
    ids += [f"place:{k}:{b}" for k in OBJECT_KINDS for b in BINS]
    ids += ["sort_all"]
    ids += [f"unplace:{k}" for k in OBJECT_KINDS]
    return ids


GARBAGE_ALL_TASKS: tuple[str, ...] = tuple(_garbage_task_ids())
# Object/bin pairs never used in pretraining; kept for online fine-tuning.
GARBAGE_HELDOUT_TASKS: tuple[str, ...] = (
    "place:apple_core:recycling",
    "place:can:compost",
    "place:cup:recycling",
    "place:banana_peel:trash",
)
GARBAGE_TRAIN_TASKS: tuple[str, ...] = tuple(t for t in GARBAGE_ALL_TASKS if t not in GARBAGE_HELDOUT_TASKS)

NAVIGATE_ALL_TASKS: tuple[str, ...] = tuple(
    f"go_to:{c}_{s}" for s in LANDMARK_SHAPES for c in LANDMARK_COLOURS
)
# One colour/shape combination per shape and per colour (a Latin-square diagonal) never used as a goal
# in pretraining.
NAVIGATE_HELDOUT_TASKS: tuple[str, ...] = (
    "go_to:red_sphere",
    "go_to:blue_cone",
    "go_to:green_pillar",
    "go_to:yellow_box",
    "go_to:purple_cylinder",
)
NAVIGATE_TRAIN_TASKS: tuple[str, ...] = tuple(
    t for t in NAVIGATE_ALL_TASKS if t not in NAVIGATE_HELDOUT_TASKS
)

_TASKS = {
    "garbage_sort": (GARBAGE_TRAIN_TASKS, GARBAGE_HELDOUT_TASKS),
    "navigate": (NAVIGATE_TRAIN_TASKS, NAVIGATE_HELDOUT_TASKS),
}

# ---------------------------------------------------------------- reset-free task graph
# Which task family may follow which, in reset-free practice. A successor is only offered when its
# precondition holds in the current world (an object of that kind on the table / in a bin, ...).
# Putting something in a bin is followed preferably by its undo, so the world cycles without a human.
GARBAGE_TASK_GRAPH: dict[str, tuple[str, ...]] = {
    "sort": ("unplace",),
    "throw_away": ("unplace",),
    "place": ("unplace",),
    "sort_all": ("unplace",),
    "unplace": ("sort", "throw_away", "place", "unplace"),
}
NAVIGATE_TASK_GRAPH: dict[str, tuple[str, ...]] = {"go_to": ("go_to",)}


def family(task_id: str) -> str:
    """The task family: the part before the first colon."""
    return task_id.split(":", 1)[0]


def train_task_ids(env_name: str) -> tuple[str, ...]:
    """Task ids used for pretraining data and evaluation of ``env_name``."""
    return _split(env_name)[0]


def heldout_task_ids(env_name: str) -> tuple[str, ...]:
    """Task ids kept out of pretraining, for online fine-tuning of ``env_name``."""
    return _split(env_name)[1]


SPLITS: tuple[str, ...] = ("train", "tuning", "test")
"""The evaluation protocol's task splits (issue #30)."""


def split_task_ids(env_name: str, split: str) -> tuple[str, ...]:
    """Task ids of one evaluation split of ``env_name``.

    ``"train"``: the pretraining tasks. ``"tuning"``: the one held-out task every setting is chosen on
    (the first held-out task, the one fine-tuning has been measured on so far). ``"test"``: the other
    held-out tasks, run only for what is reported, so a reported figure never rests on the task the
    settings were picked for.
    """
    train, heldout = _split(env_name)
    if split == "train":
        return train
    if split == "tuning":
        return heldout[:1]
    if split == "test":
        return heldout[1:]
    raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def select_tasks(env_name: str, which: str) -> tuple[str, ...]:
    """``which`` in {"train", "heldout", "all"} -> task ids."""
    train, heldout = _split(env_name)
    if which == "train":
        return train
    if which == "heldout":
        return heldout
    if which == "all":
        return train + heldout
    raise ValueError(f"tasks must be 'train', 'heldout' or 'all', got {which!r}")


def select_templates(
    templates: dict[str, dict[str, tuple[str, ...]]], which: str
) -> dict[str, tuple[str, ...]]:
    """Templates per family for the paraphrase split ``which`` in {"train", "heldout", "all"}."""
    if which not in ("train", "heldout", "all"):
        raise ValueError(f"paraphrases must be 'train', 'heldout' or 'all', got {which!r}")
    out = {}
    for fam, split in templates.items():
        out[fam] = split["train"] + split["heldout"] if which == "all" else split[which]
    return out


def object_phrase(kind: str, colour: str) -> str:
    return f"{colour} {kind.replace('_', ' ')}"


def pick_template(templates: tuple[str, ...], rng: np.random.Generator) -> str:
    return templates[int(rng.integers(len(templates)))]


def _split(env_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if env_name not in _TASKS:
        raise ValueError(f"unknown env {env_name!r}: expected one of {sorted(_TASKS)}")
    return _TASKS[env_name]
