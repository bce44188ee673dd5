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


# ---------------------------------------------------------------- Meta-World (Farama ``metaworld`` 3.1)
# The 50 Sawyer tasks by their Meta-World names, each with two training phrasings and one held-out one.
# The benchmark splits are Meta-World's own (``metaworld.env_dict``; a test checks them against it).
METAWORLD_PHRASES: dict[str, tuple[str, str, str]] = {
    "assembly-v3": (
        "put the ring onto the peg",
        "pick up the ring and slide it down over the peg",
        "assemble the ring onto the post",
    ),
    "basketball-v3": (
        "dunk the ball into the basket",
        "pick up the ball and put it through the hoop",
        "score a basket with the ball",
    ),
    "bin-picking-v3": (
        "move the block from one bin to the other",
        "pick the cube out of the bin and drop it in the other bin",
        "transfer the block into the second bin",
    ),
    "box-close-v3": (
        "put the lid on the box",
        "close the box with its lid",
        "cover the box with the lid",
    ),
    "button-press-topdown-v3": (
        "press the button from above",
        "push the button down from the top",
        "push down on the button",
    ),
    "button-press-topdown-wall-v3": (
        "press the button from above behind the wall",
        "reach over the wall and push the button down",
        "push down on the button past the wall",
    ),
    "button-press-v3": (
        "press the button",
        "push the button on the front of the box",
        "push the button in",
    ),
    "button-press-wall-v3": (
        "press the button behind the wall",
        "reach around the wall and push the button",
        "push in the button past the wall",
    ),
    "coffee-button-v3": (
        "press the button on the coffee machine",
        "push the coffee machine's button",
        "start the coffee machine",
    ),
    "coffee-pull-v3": (
        "pull the mug away from the coffee machine",
        "take the mug out from under the coffee machine",
        "slide the cup back from the coffee maker",
    ),
    "coffee-push-v3": (
        "push the mug under the coffee machine",
        "slide the mug into the coffee machine",
        "put the cup under the coffee maker",
    ),
    "dial-turn-v3": ("turn the dial", "rotate the dial a quarter turn", "twist the knob around"),
    "disassemble-v3": (
        "take the ring off the peg",
        "lift the ring up and off the post",
        "remove the ring from the peg",
    ),
    "door-close-v3": ("close the door", "push the door shut", "swing the door closed"),
    "door-lock-v3": ("lock the door", "turn the door lock down", "lock the door by turning the knob"),
    "door-open-v3": ("open the door", "pull the door open", "swing the door open"),
    "door-unlock-v3": ("unlock the door", "turn the door lock up", "unlock the door by turning the knob"),
    "hand-insert-v3": (
        "put your hand into the hole",
        "insert the gripper into the hole in the table",
        "reach down into the hole",
    ),
    "drawer-close-v3": ("close the drawer", "push the drawer shut", "slide the drawer closed"),
    "drawer-open-v3": ("open the drawer", "pull the drawer open", "slide the drawer out"),
    "faucet-open-v3": ("turn on the faucet", "open the tap", "rotate the faucet handle to turn it on"),
    "faucet-close-v3": ("turn off the faucet", "close the tap", "rotate the faucet handle to turn it off"),
    "hammer-v3": ("hammer the nail in", "pick up the hammer and drive in the nail", "knock the nail in"),
    "handle-press-side-v3": (
        "press the handle down from the side",
        "push the side handle down",
        "push down on the handle from the side",
    ),
    "handle-press-v3": ("press the handle down", "push the handle down", "push down on the handle"),
    "handle-pull-side-v3": (
        "pull the handle up from the side",
        "lift the side handle up",
        "raise the handle from the side",
    ),
    "handle-pull-v3": ("pull the handle up", "lift the handle up", "raise the handle"),
    "lever-pull-v3": ("pull the lever up", "lift the lever", "raise the lever all the way"),
    "pick-place-wall-v3": (
        "pick up the puck and place it at the goal behind the wall",
        "lift the puck over the wall to the target",
        "carry the puck past the wall to the goal",
    ),
    "pick-out-of-hole-v3": (
        "pick the peg out of the hole",
        "lift the peg out of the hole to the goal",
        "take the peg out of the hole",
    ),
    "pick-place-v3": (
        "pick up the puck and place it at the goal",
        "move the puck to the target by picking it up",
        "carry the puck to the goal position",
    ),
    "plate-slide-v3": (
        "slide the plate into the cabinet",
        "push the plate into the goal",
        "shove the plate into the cabinet",
    ),
    "plate-slide-side-v3": (
        "slide the plate sideways into the cabinet",
        "push the plate into the cabinet from the side",
        "shove the plate sideways into the goal",
    ),
    "plate-slide-back-v3": (
        "slide the plate out of the cabinet",
        "pull the plate back out of the cabinet",
        "get the plate out of the cabinet",
    ),
    "plate-slide-back-side-v3": (
        "slide the plate out of the cabinet sideways",
        "pull the plate out of the cabinet to the side",
        "get the plate out of the cabinet from the side",
    ),
    "peg-insert-side-v3": (
        "insert the peg into the hole from the side",
        "pick up the peg and push it sideways into the hole",
        "put the peg in the side hole",
    ),
    "peg-unplug-side-v3": (
        "unplug the peg from the side",
        "pull the peg out of the side hole",
        "remove the peg from the hole sideways",
    ),
    "soccer-v3": ("kick the ball into the goal", "push the soccer ball into the net", "score a goal"),
    "stick-push-v3": (
        "push the bottle with the stick",
        "grab the stick and use it to push the bottle to the goal",
        "use the stick to shove the bottle",
    ),
    "stick-pull-v3": (
        "pull the bottle with the stick",
        "grab the stick and use it to pull the bottle to the goal",
        "use the stick to drag the bottle",
    ),
    "push-v3": ("push the puck to the goal", "slide the puck to the target", "shove the puck to the goal"),
    "push-wall-v3": (
        "push the puck around the wall to the goal",
        "slide the puck past the wall to the target",
        "shove the puck around the wall",
    ),
    "push-back-v3": (
        "push the puck back to the goal",
        "pull the puck backwards to the target",
        "slide the puck back towards you",
    ),
    "reach-v3": ("reach the goal", "move the gripper to the target position", "put your hand at the goal"),
    "reach-wall-v3": (
        "reach the goal behind the wall",
        "move the gripper over the wall to the target",
        "put your hand at the goal past the wall",
    ),
    "shelf-place-v3": (
        "put the block on the shelf",
        "pick up the cube and place it on the shelf",
        "set the block onto the shelf",
    ),
    "sweep-into-v3": (
        "sweep the puck into the hole",
        "push the puck into the hole in the table",
        "brush the puck into the hole",
    ),
    "sweep-v3": (
        "sweep the puck off the table",
        "push the puck off the edge of the table",
        "brush the puck off the table",
    ),
    "window-open-v3": ("open the window", "slide the window open", "push the window open sideways"),
    "window-close-v3": ("close the window", "slide the window shut", "push the window closed sideways"),
}
METAWORLD_TASKS: tuple[str, ...] = tuple(METAWORLD_PHRASES)
"""All 50 tasks (MT50), in ``metaworld.env_dict.ALL_V3_ENVIRONMENTS``' order."""
METAWORLD_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    task: {"train": (a, b), "heldout": (c,)} for task, (a, b, c) in METAWORLD_PHRASES.items()
}
MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
ML10_TRAIN_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "sweep-v3",
    "basketball-v3",
)
ML10_TEST_TASKS: tuple[str, ...] = (
    "drawer-open-v3",
    "door-close-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "lever-pull-v3",
)
"""ML10's test tasks, never in its pretraining data: the first (``drawer-open-v3``) is the tuning task."""
METAWORLD_BENCHMARKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "metaworld_mt10": (MT10_TASKS, ()),
    "metaworld_mt50": (METAWORLD_TASKS, ()),
    "metaworld_ml10": (ML10_TRAIN_TASKS, ML10_TEST_TASKS),
}
"""Env name -> (pretraining tasks, held-out tasks). MT10 and MT50 have no held-out tasks: their figures
are on the training tasks with fresh goals, as Meta-World reports them."""
_EASY = (
    "button-press-v3 button-press-topdown-v3 button-press-topdown-wall-v3 button-press-wall-v3 "
    "coffee-button-v3 dial-turn-v3 door-close-v3 door-lock-v3 door-open-v3 door-unlock-v3 drawer-close-v3 "
    "drawer-open-v3 faucet-close-v3 faucet-open-v3 handle-press-v3 handle-press-side-v3 handle-pull-v3 "
    "handle-pull-side-v3 lever-pull-v3 plate-slide-v3 plate-slide-back-v3 plate-slide-back-side-v3 "
    "plate-slide-side-v3 reach-v3 reach-wall-v3 window-close-v3 window-open-v3 peg-unplug-side-v3"
)
METAWORLD_DIFFICULTY: dict[str, tuple[str, ...]] = {
    "easy": tuple(_EASY.split()),
    "medium": (
        "basketball-v3",
        "bin-picking-v3",
        "box-close-v3",
        "coffee-pull-v3",
        "coffee-push-v3",
        "hammer-v3",
        "peg-insert-side-v3",
        "push-wall-v3",
        "soccer-v3",
        "sweep-v3",
        "sweep-into-v3",
    ),
    "hard": (
        "assembly-v3",
        "hand-insert-v3",
        "pick-out-of-hole-v3",
        "pick-place-v3",
        "push-v3",
        "push-back-v3",
    ),
    "very_hard": ("shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3"),
}
"""Meta-World's difficulty groups (Seo et al., 2022, "Masked World Models"), as LeRobot reports them."""


def task_groups(env_name: str, task_ids: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """The groups a figure of ``env_name`` is also reported by (Meta-World: difficulty), restricted to
    ``task_ids`` and without empty groups; {} for an env without groups."""
    if env_name not in METAWORLD_BENCHMARKS:
        return {}
    groups = {g: [t for t in members if t in task_ids] for g, members in METAWORLD_DIFFICULTY.items()}
    return {g: members for g, members in groups.items() if members}


def suite(env_name: str) -> str:
    """The benchmark family ``env_name`` belongs to: ``metaworld`` for its benchmarks, else the name."""
    return "metaworld" if env_name in METAWORLD_BENCHMARKS else env_name


# Reset-free pairs: a task and its natural inverse share one scene (same MJCF), so one can follow the other.
METAWORLD_INVERSES: dict[str, str] = {
    f"{thing}-{a}-v3": f"{thing}-{b}-v3"
    for thing in ("drawer", "door", "window", "faucet")
    for a, b in (("open", "close"), ("close", "open"))
}
METAWORLD_TASK_GRAPH: dict[str, tuple[str, ...]] = {t: (u,) for t, u in METAWORLD_INVERSES.items()}
_TASKS.update(METAWORLD_BENCHMARKS)
