"""``qt datagen``: roll out scripted experts in the MuJoCo tasks and write an offline dataset.

Why a quality mixture: conservative Q-learning needs to see good, mediocre and bad actions to rank them
(Q-Transformer §5 trains on demonstrations plus failed autonomous episodes); the ``expert``/``noisy``/
``halted``/``failed`` tags let the BC baseline and fine-tuning pick their subsets with ``EpisodeFilter``.
The ``*_mixed`` recipes (``scripts/recipes.py``) are a robot team's data: few demonstrations, many
autonomous attempts, most of them failures (docs/dataset-format.md lists the sources and their rates).

How it runs: the episodes are cut into shards of ``episodes_per_file``. Each shard is one job with its own
seeds (derived from ``seed`` and the shard number only, so any worker count gives the same data) and is
written as a small complete dataset under ``<out>/.shards/shard-XXXXX``; its ``meta/info.json``, written
last, marks it complete. A killed run re-run with the same arguments skips complete shards. When all
shards exist they are merged, one shard per data file, into ``<out>`` with global episode/frame indices,
one tasks table and merged stats; ``<out>/meta/info.json`` is written last, then the shards are removed.
Episodes cover the TRAINING tasks and paraphrases only (held-out ones stay unseen for evaluation).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs.common import EnvName
from qtransformer.dataset import (
    EPISODE_INDEX,
    INDEX,
    INFO_PATH,
    STATS_KEYS,
    TASK_INDEX,
    DatasetMeta,
    DatasetWriter,
    Episode,
    RunningStats,
    episodes_table,
    tasks_table,
    write_json,
    write_parquet,
)

CAMERA = "main"
"""Camera name of the environments' single RGB view (column ``observation.images.main``)."""

# episodes (or minimum transitions), episodes per file, image side
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"episodes": 6, "episodes_per_file": 2, "max_episode_steps": 30},  # tests: seconds
    "small": {"episodes": 300, "episodes_per_file": 25},  # the demo: minutes on 2 cores
    "large": {"transitions": 1_000_000, "episodes_per_file": 250},  # >= 1M transitions: hours
}


@dataclass
class DatagenArgs:
    """Arguments of ``qt datagen``."""

    env: EnvName = "garbage_sort"
    """Environment to collect in."""
    out: Path = Path("runs/data/garbage_sort")
    """Dataset directory (created; re-running with the same arguments resumes or returns at once)."""
    recipe: str | None = None
    """Recipe whose dataset these defaults are (``scripts/recipes.py``; the CLI picks the env's). A size
    given on the command line (``--preset``, ``--episodes``, ``--transitions``) replaces the recipe's."""
    preset: Literal["tiny", "small", "large"] = "small"
    """Size: tiny (6 episodes, tests), small (300 episodes, the demo), large (>= 1,000,000 transitions)."""
    episodes: int | None = None
    """Number of episodes; overrides the preset."""
    transitions: int | None = None
    """Generate shards until at least this many frames exist; overrides the preset (and ``episodes``)."""
    episodes_per_file: int | None = None
    """Episodes per shard and data file; default from the preset. Memory of the loader scales with it."""
    workers: int = 2
    """Parallel processes; 1 runs in this process (easiest to debug)."""
    image_size: int = 0
    """Side of the RGB camera image; 0 collects a state-only dataset."""
    observation: Literal["state", "pixels"] = "state"
    """``state``: the env's full state vector (object/landmark poses: oracle for a real robot);
    ``pixels``: camera images and the robot's own state only (needs ``image_size`` > 0). Recorded in
    ``meta/datagen.json``; pretraining, evaluation and fine-tuning build the env the same way."""
    camera: str | None = None
    """The camera of ``observation.images.main`` (Navigate: ``overhead``, ``onboard``; GarbageSort:
    ``scene``, ``wrist``); None: the env's first."""
    max_episode_steps: int | None = None
    """Time limit per episode; None keeps the environment's (the tiny preset shortens it)."""
    expert_frac: float = 0.5
    """Share of episodes by the noise-free expert (``quality="expert"``)."""
    noisy_frac: float = 0.3
    """Share by the expert with Gaussian action noise and random actions (``quality="noisy"``)."""
    halted_frac: float = 0.0
    """Share by the expert that stalls part-way and stays still until the time limit
    (``quality="halted"``, ``halt``), as an autonomous policy that stops short does."""
    failed_frac: float = 0.2
    """Share by the expert told to fail (``quality="failed"``): negatives for the conservative loss."""
    halt: tuple[float, float] = (0.25, 0.75)
    """Halted episodes stall after a fraction of the expert's expected length drawn from this range."""
    noise: float = 0.3
    """Std of the Gaussian action noise of noisy episodes."""
    epsilon: float = 0.2
    """Probability of a uniformly random action per step in noisy episodes."""
    stop_when_finished: bool = True
    """End an episode once the expert has nothing left to do (a deliberate failure at rest at the wrong
    goal), as an operator stops recording; False logs idle frames up to the time limit, which teach a
    learner to stand still."""
    expert_gain: float | None = None
    """Servo gain of the GarbageSort expert, in (0, 1] (GarbageSort only); None keeps
    ``envs.experts.SERVO_GAIN`` (1)."""
    start_jitter: float | None = None
    """GarbageSort only: the hand starts up to this far (metres) from home in x and y, half of it in z
    (``GarbageSortEnv(start_jitter=...)``); None starts every episode at home. From one fixed start the
    expert's path ties the grip position to where the object is, so a learner can read one for the
    other. Recorded in ``meta/datagen.json``; pretraining, evaluation and fine-tuning use the same
    setting."""
    control_hz: float | None = None
    """Control rate of the env (Navigate only); None keeps the env's default. It is recorded as ``fps``
    in ``info.json``: training and evaluation then use the same rate."""
    scale: float = 1.0
    """Multiplies the episode (or transition) count: 10 makes a dataset ten times the recipe's, for a
    GPU or cluster run. Every prefix of the dataset keeps the mixture's shares."""
    seed: int = 0
    """Root seed; shard k, episode i always gets the same seeds."""
    overwrite: bool = False
    """Delete an existing dataset at ``out`` first instead of resuming."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        fracs = (self.expert_frac, self.noisy_frac, self.halted_frac, self.failed_frac)
        if min(fracs) < 0 or abs(sum(fracs) - 1.0) > 1e-6:
            raise ValueError(f"expert/noisy/halted/failed fractions must be >= 0 and sum to 1, got {fracs}")
        from envs.experts import check_halt

        halt = check_halt(tuple(self.halt))  # type: ignore[arg-type]  # its length is checked there
        assert halt is not None
        self.halt = halt
        if not (self.scale > 0 and np.isfinite(self.scale)):
            raise ValueError(f"scale must be a finite number > 0, got {self.scale}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.image_size < 0:
            raise ValueError(f"image_size must be >= 0, got {self.image_size}")
        from envs.common import check_observation

        check_observation(self.observation, self.image_size)
        if self.camera is not None:
            from envs import env_class

            cameras = tuple(env_class(self.env).CAMERAS)
            if self.camera not in cameras:
                raise ValueError(f"camera must be one of {cameras} for {self.env}, got {self.camera!r}")
        if self.expert_gain is not None:
            if self.env != "garbage_sort":
                raise ValueError(f"expert_gain applies to the garbage_sort env only (env={self.env!r})")
            from envs.experts import check_gain

            check_gain(self.expert_gain, "expert_gain")
        if self.start_jitter is not None and self.env != "garbage_sort":
            raise ValueError(f"start_jitter applies to the garbage_sort env only (env={self.env!r})")
        if self.control_hz is not None and self.env != "navigate":
            raise ValueError(f"control_hz applies to the navigate env only (env={self.env!r})")
        for name in ("episodes", "transitions", "episodes_per_file", "max_episode_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {v}")

    def plan(self) -> dict[str, Any]:
        """The effective sizes: the preset with explicit fields applied on top."""
        p = dict(PRESETS[self.preset])
        if self.episodes is not None:
            p["episodes"] = self.episodes
            p.pop("transitions", None)
        if self.transitions is not None:
            p["transitions"] = self.transitions
            p.pop("episodes", None)
        if self.episodes_per_file is not None:
            p["episodes_per_file"] = self.episodes_per_file
        if self.max_episode_steps is not None:
            p["max_episode_steps"] = self.max_episode_steps
        p.setdefault("max_episode_steps", None)
        for key in ("episodes", "transitions"):
            if key in p:
                p[key] = max(1, round(p[key] * self.scale))
        return p


def quality_of(global_episode: int, args: DatagenArgs) -> str:
    """Quality by a low-discrepancy sequence: every prefix of the dataset follows the fractions closely."""
    u = (global_episode * 0.6180339887498949 + 0.5) % 1.0
    for quality, frac in (
        ("expert", args.expert_frac),
        ("noisy", args.noisy_frac),
        ("halted", args.halted_frac),
    ):
        if u < frac:
            return quality
        u -= frac
    return "failed"


@dataclass
class _Shard:
    index: int
    episodes: int
    args: DatagenArgs
    max_episode_steps: int | None
    env_module: str

    @property
    def root(self) -> Path:
        return shard_root(self.args.out, self.index)


def shard_root(out: Path, index: int) -> Path:
    return out / ".shards" / f"shard-{index:05d}"


def _shard_done(root: Path) -> bool:
    return (root / INFO_PATH).exists()


def _rollout(
    env: Any, expert: Any, seed: int, env_name: str, quality: str, stop_when_finished: bool = True
) -> Episode:
    obs, info = env.reset(seed=seed)
    expert.reset()
    states, actions, rewards, images = [], [], [], []
    instruction = obs["instruction"]
    task_id = str(info.get("task", ""))
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        states.append(np.asarray(obs["state"], np.float32))
        if "image" in obs:
            images.append(np.asarray(obs["image"], np.uint8))
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(float(reward))
        task_id = str(info.get("task", task_id))
        if stop_when_finished and not terminated and getattr(expert, "finished", False):
            truncated = True  # the recording stops; the episode is cut, not terminal
    return Episode(
        state=np.stack(states),
        action=np.stack(actions),
        reward=np.asarray(rewards, np.float32),
        instruction=instruction,
        terminated=bool(terminated),
        images={CAMERA: np.stack(images)} if images else {},
        success=bool(info.get("is_success", False)),
        quality=quality,
        env=env_name,
        task_id=task_id,
        paraphrase_split="train",
    )


def _generate_shard(job: _Shard) -> tuple[int, int]:
    """Roll out one shard and write it as a complete small dataset; returns (shard index, frames)."""
    if _shard_done(job.root):
        return job.index, DatasetMeta.load(job.root).total_frames
    if job.root.exists():
        shutil.rmtree(job.root)  # a killed earlier attempt: start the shard over
    envs = importlib.import_module(job.env_module)
    args = job.args
    kwargs: dict[str, Any] = {"image_size": args.image_size, "tasks": "train", "paraphrases": "train"}
    if args.observation != "state":
        kwargs["observation"] = args.observation
    if args.camera is not None:
        kwargs["camera"] = args.camera
    if job.max_episode_steps is not None:
        kwargs["max_episode_steps"] = job.max_episode_steps
    if args.control_hz is not None:
        kwargs["control_hz"] = args.control_hz
    if args.start_jitter is not None:
        kwargs["start_jitter"] = args.start_jitter
    env = envs.make_env(args.env, **kwargs)
    fps = env_fps(env)
    settings: dict[str, dict[str, Any]] = {
        "expert": {},
        "noisy": {"noise": args.noise, "epsilon": args.epsilon},
        "halted": {"halt": args.halt},
        "failed": {"fail_prob": 1.0},
    }
    gain = {} if args.expert_gain is None else {"gain": args.expert_gain}
    try:
        with DatasetWriter(job.root, fps=fps, episodes_per_file=job.episodes) as w:
            for i in range(job.episodes):
                ep_seed, expert_seed = np.random.SeedSequence([args.seed, job.index, i]).generate_state(2)
                quality = quality_of(job.index * _episodes_per_file(args) + i, args)
                expert = envs.make_expert(env, seed=int(expert_seed), **settings[quality], **gain)
                w.add_episode(_rollout(env, expert, int(ep_seed), args.env, quality, args.stop_when_finished))
    finally:
        env.close()
    return job.index, DatasetMeta.load(job.root).total_frames


def _episodes_per_file(args: DatagenArgs) -> int:
    return int(args.plan()["episodes_per_file"])


def _jobs(
    args: DatagenArgs, start: int, count: int, env_module: str, total_episodes: int | None
) -> list[_Shard]:
    plan = args.plan()
    epf = int(plan["episodes_per_file"])
    jobs = []
    for k in range(start, start + count):
        n = epf if total_episodes is None else min(epf, total_episodes - k * epf)
        if n <= 0:
            break
        jobs.append(_Shard(k, n, args, plan["max_episode_steps"], env_module))
    return jobs


def _run_jobs(jobs: list[_Shard], workers: int) -> dict[int, int]:
    if workers == 1 or len(jobs) <= 1:
        return dict(_generate_shard(j) for j in jobs)
    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return dict(pool.imap_unordered(_generate_shard, jobs))


_RECORD_DEFAULTS: dict[str, Any] = {
    "halted_frac": 0.0,
    "halt": [0.25, 0.75],
    "scale": 1.0,
    "observation": "state",
    "camera": None,
}
"""Record keys added after datasets were made without them, with the value those datasets had."""


def _args_record(args: DatagenArgs) -> dict[str, Any]:
    d = asdict(args)
    d["out"] = str(args.out)
    d["halt"] = list(args.halt)
    d.pop("workers")  # the worker count does not change the data
    d.pop("overwrite")
    if args.env == "garbage_sort" and args.expert_gain is None:
        from envs.experts import SERVO_GAIN

        d["expert_gain"] = SERVO_GAIN  # recorded as used: a dataset made at another default is not resumed
    return d


def run_datagen(args: DatagenArgs, *, env_module: str = "envs") -> Path:
    """Generate (or finish generating) the dataset described by ``args``; returns its directory.

    ``env_module`` names the module providing ``make_env``/``make_expert`` (tests pass a fake one).
    """
    out = args.out
    record = _args_record(args)
    if args.overwrite and out.exists():
        shutil.rmtree(out)
    args_path = out / ".shards" / "args.json"
    done_path = out / "meta" / "datagen.json"
    for path in (done_path, args_path):
        if path.exists():
            old = json.loads(path.read_text())
            # Keys an older version recorded but no longer takes (e.g. ``fps``) are not a difference,
            # nor a key it did not record yet whose value is the default (what it did).
            changed = sorted(
                k for k in record if (old[k] if k in old else _RECORD_DEFAULTS.get(k)) != record[k]
            )
            if changed:
                raise ValueError(
                    f"{out} was generated with different arguments ({changed}); pass overwrite=True"
                )
            if path == done_path and (out / INFO_PATH).exists():
                return out  # finished earlier
    write_json(args_path, record)

    plan = args.plan()
    frames: dict[int, int]  # shard -> frames written
    if "episodes" in plan:
        total = int(plan["episodes"])
        epf = int(plan["episodes_per_file"])
        frames = _run_jobs(_jobs(args, 0, -(-total // epf), env_module, total), args.workers)
        shards = sorted(frames)
    else:  # a frame target: launch waves of shards until the shards 0..k hold enough frames
        target = int(plan["transitions"])
        frames = {}
        shards = []
        while True:
            have, k = 0, 0
            while k in frames and have < target:
                have += frames[k]
                k += 1
            if have >= target:
                shards = list(range(k))
                break
            frames.update(
                _run_jobs(_jobs(args, len(frames), max(args.workers, 1), env_module, None), args.workers)
            )
    merge_shards([shard_root(out, k) for k in shards], out)
    write_json(done_path, record)
    shutil.rmtree(out / ".shards", ignore_errors=True)
    return out


def env_fps(env: Any) -> int:
    """The env's control rate in Hz (``metadata["render_fps"]``; 10 for envs that do not say)."""
    return int(getattr(env, "metadata", {}).get("render_fps", 10))


def merge_shards(shards: list[Path], out: Path) -> None:
    """Concatenate complete single-file datasets into ``out``: one data file per shard, global indices.

    Only the index columns are rewritten (images stay encoded). Every file is replaced atomically and
    ``meta/info.json`` is written last, so an interrupted merge is simply redone by the next run.
    """
    if not shards:
        raise ValueError("no shard to merge")
    tasks: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    stats = {k: RunningStats() for k in STATS_KEYS}
    features: dict[str, Any] | None = None
    frame0 = 0
    meta0 = None
    for file_no, root in enumerate(shards):
        meta = DatasetMeta.load(root)
        meta0 = meta0 or meta
        if features is None:
            features = meta.features
        elif meta.features != features:
            raise ValueError(f"{root} has features that differ from {shards[0]}")
        remap = np.array([tasks.setdefault(t, len(tasks)) for t in meta.tasks], dtype=np.int64)
        (f,) = meta.files()
        table = pq.read_table(f.path)
        ep0 = len(rows)
        n = table.num_rows
        table = _replace(table, INDEX, np.arange(frame0, frame0 + n, dtype=np.int64))
        table = _replace(table, EPISODE_INDEX, table.column(EPISODE_INDEX).to_numpy() + ep0)
        table = _replace(table, TASK_INDEX, remap[table.column(TASK_INDEX).to_numpy()])
        chunk, file = divmod(file_no, int(meta.info.get("chunks_size", 1000)))
        write_parquet(out / meta.info["data_path"].format(chunk_index=chunk, file_index=file), table)
        for ep_row in pq.read_table(
            root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ).to_pylist():
            ep_row.update(
                {
                    "episode_index": ep_row["episode_index"] + ep0,
                    "data/chunk_index": chunk,
                    "data/file_index": file,
                    "dataset_from_index": ep_row["dataset_from_index"] + frame0,
                    "dataset_to_index": ep_row["dataset_to_index"] + frame0,
                }
            )
            rows.append(ep_row)
        for k, st in meta.stats.items():
            if k in stats:
                stats[k].merge_json(st)
        frame0 += n
    assert meta0 is not None and features is not None
    write_parquet(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet", episodes_table(rows))
    write_parquet(out / "meta" / "tasks.parquet", tasks_table(list(tasks)))
    write_json(out / "meta" / "stats.json", {k: s.to_json() for k, s in stats.items() if s.count})
    info = dict(meta0.info)
    info.update(
        {
            "total_episodes": len(rows),
            "total_frames": frame0,
            "total_tasks": len(tasks),
            "splits": {"train": f"0:{len(rows)}"},
            "qtransformer": {
                "episodes_per_file": meta0.info["qtransformer"]["episodes_per_file"],
                "total_files": len(shards),
            },
        }
    )
    write_json(out / INFO_PATH, info)


def _replace(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def main() -> None:
    """``python -m pretrain.datagen --preset small ...`` (the ``qt datagen`` command parses the same args)."""
    import tyro

    print(run_datagen(tyro.cli(DatagenArgs)))


if __name__ == "__main__":
    main()
